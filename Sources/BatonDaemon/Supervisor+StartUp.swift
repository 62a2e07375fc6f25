import BatonCore
import BatonSystem
import Glibc

/// A start-up that fails does not go on forever, nor hold back the deploy that would fix it.
extension Supervisor {
    /// Whether some slot is failing while baton has not served yet (a deploy may pre-empt the start-up).
    var startUpFailing: Bool {
        !sentReady && slots.contains { $0.backoff.consecutiveFailures > 0 && $0.current?.state != .ready }
    }

    /// A start-up that keeps failing ends: `[app] start_attempts` failures in a row of one
    /// slot before READY=1 was ever sent, and no deploy running to rescue it.
    func startUpExhausted(_ slot: Slot) -> Bool {
        config.app.startAttempts > 0 && !sentReady && phase == .starting && operation == nil
            && slot.backoff.consecutiveFailures >= config.app.startAttempts
    }
}
