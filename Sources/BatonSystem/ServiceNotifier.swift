import CSystemd
import Glibc

/// Talks to the service manager through $NOTIFY_SOCKET (READY=1, STATUS=,
/// RELOADING=1, EXTEND_TIMEOUT_USEC=, WATCHDOG=1, STOPPING=1). A no-op when
/// baton does not run under systemd.
public struct ServiceNotifier: Sendable {
    /// Whether $NOTIFY_SOCKET is set.
    public let isEnabled: Bool
    /// How often baton feeds the watchdog (WATCHDOG_USEC/4), if the manager asks.
    public let watchdogPingInterval: Duration?

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
        _ = sd_notify(0, message)
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
