import CSystemd
import Glibc
import Synchronization

/// Talks to the service manager through $NOTIFY_SOCKET (READY=1, STATUS=,
/// RELOADING=1, EXTEND_TIMEOUT_USEC=, WATCHDOG=1, STOPPING=1). A no-op when
/// baton does not run under systemd.
public struct ServiceNotifier: Sendable {
    /// Whether $NOTIFY_SOCKET is set.
    public let isEnabled: Bool
    /// How often baton feeds the watchdog (WATCHDOG_USEC/4), if the manager asks.
    public let watchdogPingInterval: Duration?
    /// Whether the last message failed, and the errno of a failure not yet taken.
    private let failures = Latch()

    private final class Latch: Sendable {
        let state = Mutex<(failing: Bool, unsaid: Int32?)>((false, nil))
    }

    /// Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID from the environment.
    public init() {
        isEnabled = getenv("NOTIFY_SOCKET") != nil
        var usec: UInt64 = 0
        if sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            // A quarter of the timeout: pings stay within WATCHDOG_USEC/2 even
            // when a timer fires late.
            watchdogPingInterval = .microseconds(Int64(usec / 4))
        } else {
            watchdogPingInterval = nil
        }
    }

    /// Sends one notification message (newline-separated assignments).
    public func notify(_ message: String) {
        guard isEnabled else { return }
        let result = sd_notify(0, message)
        failures.state.withLock {
            if result < 0, !$0.failing { $0.unsaid = -result }
            $0.failing = result < 0
        }
    }

    /// What went wrong when messages began to fail, once each time they do (nil: nothing new).
    /// A hardening audit: with the socket hidden (a private /tmp or /run) every message was
    /// lost, systemd waited for READY=1 until its start timeout, and baton said nothing.
    public func takeFailure() -> String? {
        let unsaid = failures.state.withLock { state in
            let code = state.unsaid
            state.unsaid = nil
            return code
        }
        guard let code = unsaid else { return nil }
        let path = getenv("NOTIFY_SOCKET").map { String(cString: $0) } ?? "?"
        // An abstract socket (`@name`) is in the network namespace, not a folder.
        let hidden =
            path.hasPrefix("@")
            ? "(a network namespace of its own, PrivateNetwork=, hides an abstract socket)"
            : "(a private /tmp or /run, or InaccessiblePaths=, can hide the socket)"
        return "cannot notify the service manager at NOTIFY_SOCKET=\(path): \(String(cString: strerror(code))) (errno \(code)); "
            + "it sees neither READY=1 nor the status \(hidden)"
    }

    /// READY=1 with a status line.
    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }

    /// RELOADING=1 with MONOTONIC_USEC, as the notify-reload protocol wants.
    public func reloading(status: String) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)\nSTATUS=\(status)")
    }

    /// Hands `fd` to systemd's FD store under `name` (FDSTORE=1): a restart of
    /// the service, or a crash with Restart=on-failure, passes it back.
    @discardableResult
    public func storeFD(_ fd: Int32, name: String) -> Bool {
        guard isEnabled else { return false }
        var fds = [fd]
        return sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)", &fds, 1) > 0
    }

    /// Removes the stored fds named `name` (FDSTOREREMOVE=1).
    public func removeStoredFD(name: String) { notify("FDSTOREREMOVE=1\nFDNAME=\(name)") }

    /// Tells systemd the current step needs `extra` more time than its timeout.
    public func extendTimeout(_ extra: Duration) {
        let (s, atto) = extra.components
        let usec = s * 1_000_000 + atto / 1_000_000_000_000
        notify("EXTEND_TIMEOUT_USEC=\(usec)")
    }
}
