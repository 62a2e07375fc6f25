/// What a worker's exit means for its slot, decided from where the worker was and what it
/// was doing: pure, so every case is tested without a process.
///
/// - A worker baton was draining (stop signal sent) is gone as asked: `drained`.
/// - A rollout's new worker that never served failed its start: `replacementFailed` (its
///   reason says "exited after becoming ready" when it was ready but held back for the canary).
/// - A rollout's new worker that became ready and serves exits while the rollout runs: the
///   release is bad (`newReleaseFailed`): the rollout fails and rolls back. A worker of that
///   same release that is not the rollout's (a policy restart or reload keeps the release) is
///   the slot's failure instead, for the reason `otherwise` gives.
/// - A worker the kernel's OOM killer killed (`stopReason` `.oom`) is said to be one, not to
///   have "exited", wherever it was: CI must not blame the release for the host's memory.
/// - Any other serving or starting worker failed: `slotFailed`, respawned after the crash
///   backoff; its uptime counts (to reset the backoff) only if it had become ready.
public enum WorkerExit: Sendable, Equatable {
    /// A worker baton stopped is gone.
    case drained
    /// A rollout's new worker failed before serving.
    case replacementFailed(reason: String)
    /// A new worker of the running rollout exited after it became ready; `otherwise`: the
    /// slot's restart reason when the worker was not the rollout's.
    case newReleaseFailed(reason: String, otherwise: RestartCause)
    /// The slot's worker failed; `countsUptime`: it had become ready.
    case slotFailed(reason: RestartCause, countsUptime: Bool)

    /// Where the worker was in its slot.
    public enum Place: Sendable, Equatable, CaseIterable {
        /// Among the old workers draining.
        case draining
        /// The new worker of a rolling replacement, not serving yet.
        case replacement
        /// The slot's serving (or first-starting) worker.
        case current
    }

    /// What the worker was doing when it exited.
    public enum Stage: Sendable, Equatable, CaseIterable {
        /// Not ready yet.
        case starting
        /// Ready (serving).
        case ready
        /// Told to stop.
        case draining
    }

    /// The verdict for a worker that exited (`exit`: how, e.g. "exit code 1"). `stopReason`:
    /// why baton was stopping it, if it was (readiness timeout, watchdog, liveness);
    /// `runsRolloutRelease`: it runs the release the running rollout rolls out.
    /// `stopText`: what baton said when it stopped the worker, in place of `stopReason`'s name
    /// in a failed start's reason (a readiness timeout names what was awaited).
    public static func classify(
        place: Place, stage: Stage, stopReason: RestartReason?, exit: String, pid: Int32, runsRolloutRelease: Bool, stopText: String? = nil
    ) -> WorkerExit {
        let stopText = stopText ?? stopReason?.rawValue
        let oomKilled = stopReason == .oom ? "pid \(pid) was killed by the kernel's OOM killer" : nil
        switch (place, stage) {
        case (.draining, _), (.current, .draining):
            return .drained
        case (.replacement, .ready):
            // A new worker held beside its slot's old one while the canary settles: it was
            // ready, so its exit says the release is bad, in the same words as a serving one's.
            return .replacementFailed(
                reason: oomKilled.map { "\($0) after becoming ready (\(exit))" } ?? stopText
                    ?? "pid \(pid) exited after becoming ready (\(exit))")
        case (.replacement, _):
            return .replacementFailed(
                reason: oomKilled.map { "\($0) during start (\(exit))" } ?? stopText ?? "exited during start (\(exit))")
        case (.current, .ready) where runsRolloutRelease:
            return .newReleaseFailed(
                reason: "\(oomKilled ?? "pid \(pid) exited") after becoming ready (\(exit))", otherwise: RestartCause(stopReason ?? .crash))
        case (.current, .ready):
            return .slotFailed(reason: RestartCause(stopReason ?? .crash), countsUptime: true)
        case (.current, .starting):
            return .slotFailed(reason: stopReason.map { RestartCause($0) } ?? .exitedDuringStart, countsUptime: false)
        }
    }
}
