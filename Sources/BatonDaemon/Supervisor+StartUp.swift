import BatonCore
import BatonSystem
import Glibc

/// A start-up that fails does not go on forever, nor hold back the deploy that would fix it;
/// no slot is left without a worker after an operation; a start that failed, or a worker that
/// crashed, is started again after its backoff.
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
            // A restart of the slot (it had a worker), counted with its reason as the slot counts
            // it (a soak audit: RESTARTS went up 3 times with no reason in baton_restarts_total;
            // the worker that died there counted as `start-failed`, a failed start, not a restart).
            if slot.generation > 0 { restartsByReason[.crash, default: 0] += 1 }
            startWorker(slot, role: .current, reason: RestartCause(.crash))
        }
    }

    /// A start failed (spawn error, exit while starting, readiness timeout) or
    /// a serving worker crashed.
    /// `shortage`: the spawn failed for want of baton's own descriptors or processes (outside
    /// the start-up, whose `start_attempts` still ends a baton that cannot start its workers).
    func startFailed(slot: Slot, role: Role, worker: Worker?, reason: RestartCause, uptime: Duration?, shortage: Bool = false) {
        guard phase != .stopping else { return }
        if role == .replacement {
            // A rollout's new worker that failed counts too (README's start-failed).
            restartsByReason[.startFailed, default: 0] += 1
            lastFailureOutput = worker?.recentOutput.elements ?? []
            let full =
                reason.text
                + (FailureOutput.summary(lastFailureOutput, searchable: worker.map { Self.ownFailureLines($0, $0.exit) } ?? 0, earlier: worker?.earlierError)
                    ?? "")
            rolloutEvent { $0.newWorkerFailed(slot: slot.index, reason: full) }
            return
        }
        // An operation's worker already starting in the slot replaces the one that exited, and
        // counts as that operation's restart (a soak audit: a canary that crashed after the
        // rollback had started its replacement counted a `crash` restart beside the `rollback`
        // one, and logged `slot 1 restarts in 1s` for a start that never came).
        if let replacement = slot.replacement {
            logger.info("slot \(slot.index): its worker exited (\(reason.text)); pid \(replacement.pid), starting there, replaces it")
            return
        }
        restartsByReason[reason.reason, default: 0] += 1
        cancelRespawn(slot)
        let limited = startUpLimitApplies
        switch slot.life.failed(
            reason, uptime: uptime, now: loop.now(), startAttempts: limited ? config.app.startAttempts : nil, shortage: shortage && !limited)
        {
        case .giveUp:
            logger.critical(
                "start-up failed: slot \(slot.index) failed \(slot.backoff.consecutiveFailures) starts in a row (\(reason.text)) before every slot served ([app] start_attempts = \(config.app.startAttempts)): exiting 1"
            )
            exitCode = 1
            beginShutdown()
            return
        case .respawn(let delay, let crashLooping):
            if crashLooping {
                logger.error(
                    "slot \(slot.index) is crash-looping (\(slot.backoff.consecutiveFailures) failures in a row); next start in \(Units.formatDuration(delay))")
            } else {
                logger.info("slot \(slot.index) restarts in \(Units.formatDuration(delay))")
            }
            slot.respawnTimer = loop.schedule(after: delay) { [unowned self, unowned slot] in
                slot.respawnTimer = nil
                guard self.phase != .stopping else { return }
                // A rollout's new worker starting in this slot takes it (and if it fails, the
                // end of the operation refills the slot: `refillEmptySlots`).
                guard let reason = slot.life.respawnDue(empty: slot.current == nil && slot.replacement == nil) else { return }
                self.startWorker(slot, role: .current, reason: reason)
            }
        }
        fillStartQueue()
        reportFailingStartUp()
    }
}
