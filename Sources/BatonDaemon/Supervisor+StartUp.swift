import BatonCore
import BatonSystem
import Glibc

/// A start-up that fails does not go on forever, nor hold back the deploy that would fix it;
/// no slot is left without a worker after an operation.
extension Supervisor {
    /// Whether some slot is failing while baton has not served yet (a deploy may pre-empt the start-up).
    var startUpFailing: Bool {
        !sentReady && slots.contains { $0.backoff.consecutiveFailures > 0 && $0.current?.state != .ready }
    }

    /// A start-up that keeps failing ends (`SlotLifecycle.failed`): `[app] start_attempts`
    /// failures in a row of one slot, while READY=1 was never sent and no deploy runs to
    /// rescue it; this says when that limit applies.
    var startUpLimitApplies: Bool { !sentReady && phase == .starting && operation == nil }

    /// After an operation: a slot left with no worker at all (its respawn skipped while the
    /// operation's new worker started there and then failed or was abandoned, or never
    /// started because a deploy pre-empted the start-up) gets one again.
    func refillEmptySlots() {
        guard phase != .stopping, operation == nil else { return }
        for slot in slots where slot.current == nil && slot.replacement == nil && slot.life.respawn == nil {
            guard !startQueue.contains(slot.index) else { continue }
            logger.info("slot \(slot.index) has no worker after the operation: starting one")
            startWorker(slot, role: .current, reason: RestartCause(.crash))
        }
    }
}
