/// One slot's bookkeeping across its workers, decided without a process or a clock of its
/// own: the generation each start takes, the restarts it counts and why the last one
/// happened, the crash backoff with the respawn it schedules (or the start-up it gives up),
/// and when a ready worker has stayed up long enough to reset the backoff.
///
/// The supervisor feeds it events with the time (a start, a promotion, a failure, a worker
/// ready, a timer due) and performs what it answers: it arms and cancels the timers, spawns
/// and signals. What a worker's exit means is ``WorkerExit``'s; which new worker is promoted
/// is ``RollingRestart``'s.
///
/// Rules:
/// - Every start takes the next generation, whatever its role; a start of the slot's own
///   worker after the first counts as a restart (for its reason, if given), a rollout's new
///   worker only once it is promoted (a failed one changed nothing).
/// - A failure of the slot's own worker (a failed start or a crash) is counted in the backoff
///   and becomes the last restart reason. It gives the start-up up when the limit applies and
///   the slot failed that many times in a row; otherwise it schedules one respawn after the
///   backoff's delay, replacing any respawn still pending.
/// - A respawn that comes due starts a worker only in an empty slot (a rollout's new worker
///   may have taken it meanwhile); either way it is no longer pending. A start cancels it.
/// - A worker that becomes ready opens the slot's stability window (one at a time: a later
///   ready worker's window replaces it); when the window ends with that same worker serving
///   and ready, the backoff resets.
public struct SlotLifecycle: Sendable, Equatable {
    /// Which place in the slot a new worker takes.
    public enum Role: Sendable, Equatable, CaseIterable {
        /// The slot's serving worker (first start, or respawn after a crash).
        case current
        /// A new worker of a rolling replacement.
        case replacement
    }

    /// A respawn scheduled after a failure: when it is due, and the reason the start counts under.
    public struct Respawn: Sendable, Equatable {
        public var at: Duration
        public var reason: RestartCause

        public init(at: Duration, reason: RestartCause) {
            self.at = at
            self.reason = reason
        }
    }

    /// The stability window of a ready worker (by generation) and when it ends.
    public struct StabilityWindow: Sendable, Equatable {
        public var generation: Int
        public var endsAt: Duration

        public init(generation: Int, endsAt: Duration) {
            self.generation = generation
            self.endsAt = endsAt
        }
    }

    /// What to do after a failure of the slot's own worker.
    public enum FailureAction: Sendable, Equatable {
        /// Start again after `delay`; `crashLooping`: the slot failed
        /// ``CrashBackoff/crashLoopThreshold`` times or more in a row.
        case respawn(after: Duration, crashLooping: Bool)
        /// The start-up failed its limit of starts in a row: baton gives up.
        case giveUp
    }

    /// Position of the slot.
    public let index: Int
    /// The generation of the latest start (0: none yet).
    public private(set) var generation: Int
    /// Restarts counted: starts of its own worker after the first, and promotions.
    public private(set) var restarts: Int
    /// Why it last restarted (or last failed).
    public private(set) var lastRestartReason: RestartCause?
    /// The crash backoff.
    public private(set) var backoff: CrashBackoff
    /// The respawn pending, if any.
    public private(set) var respawn: Respawn?
    /// The stability window running, if any.
    public private(set) var stabilityWindow: StabilityWindow?

    /// A slot that has not started a worker yet.
    public init(index: Int, backoff: CrashBackoff = CrashBackoff()) {
        self.init(index: index, generation: 0, restarts: 0, lastRestartReason: nil, backoff: backoff)
    }

    /// A slot carried over from an earlier baton (an upgrade), with its counts; its backoff starts afresh.
    public init(index: Int, generation: Int, restarts: Int, lastRestartReason: RestartCause?, backoff: CrashBackoff = CrashBackoff()) {
        self.index = index
        self.generation = generation
        self.restarts = restarts
        self.lastRestartReason = lastRestartReason
        self.backoff = backoff
    }

    /// Failures in a row (``CrashBackoff/consecutiveFailures``).
    public var consecutiveFailures: Int { backoff.consecutiveFailures }

    /// Whether the slot is crash-looping (``CrashBackoff/isCrashLooping``).
    public var isCrashLooping: Bool { backoff.isCrashLooping }

    /// A worker starts in the slot as `role`: returns its generation. Cancels a pending respawn.
    public mutating func start(role: Role, reason: RestartCause?) -> Int {
        respawn = nil
        generation += 1
        if generation > 1, role == .current {
            restarts += 1
            if let reason { lastRestartReason = reason }
        }
        return generation
    }

    /// Drops the pending respawn (a start that waits for something else, or a shutdown).
    public mutating func cancelRespawn() { respawn = nil }

    /// The rollout's new worker serves in the slot from now on: a restart for `reason`. A worker
    /// of a new release or spec (a deploy, rollback or reload) starts the crash backoff afresh:
    /// the failures counted were the old one's (as a new pod starts without its predecessor's
    /// CrashLoopBackOff), so a crash loop the deploy fixed no longer shows in the status.
    public mutating func promoted(reason: RestartReason) {
        lastRestartReason = RestartCause(reason)
        restarts += 1
        if [.deploy, .rollback, .reload].contains(reason) { backoff.workerStable() }
    }

    /// The slot's worker on a running rollout's new release exited after it became ready: the
    /// rollout answers that (it fails and rolls back); the slot records `cause` (a crash, or
    /// an OOM kill) as its last reason, without backoff or respawn.
    public mutating func rolloutWorkerCrashed(_ cause: RestartCause = RestartCause(.crash)) { lastRestartReason = cause }

    /// The slot's own worker failed to start or crashed after `uptime` (nil: it never became
    /// ready) at `now`. `startAttempts`: the start-up's limit of failures in a row, when it
    /// applies (nothing served yet and nothing running that could fix it); nil or 0 otherwise.
    /// `shortage`: the start failed for want of baton's own descriptors or processes, no failure
    /// of the release's (tried again after the base delay, not counted toward a crash loop).
    public mutating func failed(
        _ reason: RestartCause, uptime: Duration?, now: Duration, startAttempts: Int?, shortage: Bool = false
    ) -> FailureAction {
        // The kernel's OOM killer took a worker that had served: the host's memory, not the
        // app's crash. It is replaced after the backoff's base delay, as gunicorn and puma
        // replace a killed worker at once, and the kill does not count toward a crash loop (a
        // memory audit: the backoff grew with every kill under a fast leak, every slot ended
        // crash-looping, and the memory rules, which wait for every slot to serve, never ran).
        // So is a start baton's own descriptors or processes refused (a re-audit: EMFILE at each
        // start backed off to 32 s, the slot empty 28 s after descriptors came back).
        let delay = (reason.reason == .oom && uptime != nil) || shortage ? backoff.base : backoff.workerFailed(uptime: uptime)
        lastRestartReason = reason
        if let limit = startAttempts, limit > 0, backoff.consecutiveFailures >= limit {
            respawn = nil
            return .giveUp
        }
        respawn = Respawn(at: now + delay, reason: reason)
        return .respawn(after: delay, crashLooping: backoff.isCrashLooping)
    }

    /// The pending respawn's time came: returns the reason to start under, or nil when none
    /// was pending or the slot is not empty (`empty`: no serving worker and no rollout's new one).
    public mutating func respawnDue(empty: Bool) -> RestartCause? {
        guard let pending = respawn else { return nil }
        respawn = nil
        return empty ? pending.reason : nil
    }

    /// The worker of `generation` became ready at `now`: its stability window opens (replacing
    /// any other). Returns how long it lasts.
    public mutating func ready(generation: Int, now: Duration) -> Duration {
        stabilityWindow = StabilityWindow(generation: generation, endsAt: now + backoff.stableAfter)
        return backoff.stableAfter
    }

    /// The stability window of `generation` ended; `serving`: the generation of the slot's
    /// serving worker if it is ready. The backoff resets if that is the window's worker.
    /// Returns whether it did.
    @discardableResult
    public mutating func stabilityWindowEnded(generation: Int, serving: Int?) -> Bool {
        guard let window = stabilityWindow, window.generation == generation else { return false }
        stabilityWindow = nil
        guard serving == generation else { return false }
        backoff.workerStable()
        return true
    }
}
