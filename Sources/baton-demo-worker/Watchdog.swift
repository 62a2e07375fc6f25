import CSystemd
import Glibc

/// The worker watchdog, done as `sd_watchdog_enabled()` users do it: when the supervisor passed
/// `WATCHDOG_USEC` (and `WATCHDOG_PID` naming this process), `WATCHDOG=1` every half interval
/// from READY=1 on. A stopped (SIGSTOP) process stops pinging with everything else, so the
/// supervisor replaces it.
enum Watchdog {
    /// Starts the pinging thread when a watchdog was asked for.
    static func start() {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return }
        let period = usec * 1000 / 2
        log("watchdog: WATCHDOG=1 every \(period / 1_000_000) ms")
        let result = spawnDetachedThread(stackSize: 128 * 1024) {
            while true {
                Notify.withoutBlocking("WATCHDOG=1")
                sleepNanos(period)
            }
        }
        if result != 0 { log("watchdog: cannot start its thread: \(errorText(result))") }
    }
}
