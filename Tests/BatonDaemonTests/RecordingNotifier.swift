@testable import BatonDaemon

/// Records what the supervisor tells the service manager.
final class RecordingNotifier: ServiceNotifying {
    /// Every message, in order.
    private(set) var messages: [String] = []
    var isEnabled = true
    /// WATCHDOG_USEC/4, as systemd would set it (nil: no watchdog).
    var watchdogPingInterval: Duration? = nil
    func notify(_ message: String) { messages.append(message) }
    func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    func reloading(status: String) { notify("RELOADING=1\nSTATUS=\(status)") }
    func storeFD(_ fd: Int32, name: String) -> Bool { false }
    func removeStoredFD(name: String) {}
    func extendTimeout(_ extra: Duration) { notify("EXTEND_TIMEOUT_USEC=\(extra.components.seconds * 1_000_000)") }
}
