/// One recycling engine for every reason a worker is replaced between deploys (OOM kill,
/// `worker_limit`, memory threshold, leak prediction, `max_requests`, age), as a pure state
/// machine: the reasons submit candidates, the engine says which recycles start now, and the
/// daemon tells it when each one ended. Time is an explicit monotonic `now` (tests drive it with
/// a fake clock).
///
/// Rules:
/// - **Budget**: at most ``budget(autoWidth:)`` recycles at once (`[rolling] recycle_concurrency`:
///   a number, or `auto`, the surge width the rollout planner allows now from the memory
///   headroom and the CPUs; at least 1).
/// - **Spacing**: two starts are at least `recycle_spacing` apart, so a burst of candidates
///   does not fork a storm of workers at once; ``Plan/wakeAt`` says when the next may start.
/// - **Priorities**: OOM and worker-limit before memory-threshold, before leak-prediction,
///   before max-requests, before age; among equals, the one submitted first.
/// - **De-duplication**: a slot recycling now is not queued again; a slot already queued keeps
///   one entry, upgraded when a reason of higher priority comes (its time in the queue is kept).
/// - **Never during a deploy, reload, rollback or roll-ahead** (`blocked`): they own the slots;
///   nothing starts, and the queue resumes after them. A queued candidate whose worker is no
///   longer the slot's serving one (a deploy replaced it) is dropped when it would start.
public struct RecyclingEngine: Sendable, Equatable {
    /// How many recycles may run at once (`[rolling] recycle_concurrency`).
    public typealias Concurrency = RecycleConcurrency

    /// One worker to recycle, and why.
    public struct Candidate: Sendable, Equatable {
        /// The slot.
        public var slot: Int
        /// The worker it was submitted for (a different worker serving there makes it stale).
        public var pid: Int32
        /// Why.
        public var reason: RestartReason
        /// The line that says why, for the log.
        public var detail: String
        /// When it was first submitted (its place among candidates of the same priority).
        public var since: Duration

        /// Creates a candidate.
        public init(slot: Int, pid: Int32, reason: RestartReason, detail: String, since: Duration) {
            self.slot = slot
            self.pid = pid
            self.reason = reason
            self.detail = detail
            self.since = since
        }
    }

    /// What a submission did.
    public enum Submission: Sendable, Equatable {
        /// A new entry in the queue.
        case queued
        /// The slot was queued for a reason of lower priority: it now carries this one.
        case upgraded(from: RestartReason)
        /// Already queued for a reason of the same or higher priority: nothing changed.
        case alreadyQueued
        /// The slot is recycling now: nothing changed.
        case alreadyRecycling
    }

    /// What the daemon does now.
    public struct Plan: Sendable, Equatable {
        /// Recycles to start now, highest priority first.
        public var starts: [Candidate] = []
        /// Queued candidates dropped because their worker no longer serves the slot.
        public var dropped: [Candidate] = []
        /// When to ask again: the spacing lets the next queued candidate start then (nil: on
        /// the next event).
        public var wakeAt: Duration?

        /// Creates a plan.
        public init(starts: [Candidate] = [], dropped: [Candidate] = [], wakeAt: Duration? = nil) {
            self.starts = starts
            self.dropped = dropped
            self.wakeAt = wakeAt
        }
    }

    /// The order of the reasons: higher goes first. Reasons no recycle uses rank lowest.
    public static func priority(_ reason: RestartReason) -> Int {
        switch reason {
        case .oom, .workerLimit: 5
        case .memoryThreshold: 4
        case .leakPrediction: 3
        case .maxRequests: 2
        case .age: 1
        default: 0
        }
    }

    /// `recycle_concurrency`.
    public var concurrency: Concurrency
    /// `recycle_spacing`: the least time between two starts.
    public var spacing: Duration
    /// Waiting, in the order they start.
    public private(set) var queued: [Candidate] = []
    /// Recycling now, by slot.
    public private(set) var recycling: [Int: Candidate] = [:]
    /// Recycles whose place was freed while their new worker's stability window still runs, by
    /// slot: a worker that dies in it fails the recycle after all (``finished(slot:)`` returns
    /// it), so the reason that asked can still treat it as failed.
    public private(set) var settling: [Int: Candidate] = [:]
    /// When the last recycle started.
    public private(set) var lastStart: Duration?

    /// The last start as a previous image of baton recorded it (`baton upgrade`: the monotonic
    /// clock carries on), so that the next start keeps the spacing from it.
    public mutating func resume(lastStart: Duration) {
        self.lastStart = max(lastStart, self.lastStart ?? lastStart)
    }

    /// Creates an idle engine; a fixed concurrency is at least 1, the spacing at least zero.
    public init(concurrency: Concurrency, spacing: Duration) {
        self.concurrency = .auto
        self.spacing = .zero
        reconfigure(concurrency: concurrency, spacing: spacing)
    }

    /// New settings (a reloaded config); the queue and the recycles in flight are kept.
    public mutating func reconfigure(concurrency: Concurrency, spacing: Duration) {
        if case .fixed(let n) = concurrency { self.concurrency = .fixed(max(1, n)) } else { self.concurrency = .auto }
        self.spacing = max(.zero, spacing)
    }

    /// Recycles at once now: the fixed number, or `autoWidth` (the planner's width, at least 1).
    public func budget(autoWidth: Int) -> Int {
        if case .fixed(let n) = concurrency { return n }
        return max(1, autoWidth)
    }

    /// Whether `slot` is queued or recycling.
    public func holds(slot: Int) -> Bool { recycling[slot] != nil || queued.contains { $0.slot == slot } }

    /// A reason asks for the recycle of `slot`'s worker `pid`.
    public mutating func submit(slot: Int, pid: Int32, reason: RestartReason, detail: String, now: Duration) -> Submission {
        if recycling[slot] != nil { return .alreadyRecycling }
        if let i = queued.firstIndex(where: { $0.slot == slot }) {
            let old = queued[i]
            // A newer worker in the slot: the old entry was about a worker gone; this one replaces it.
            guard old.pid == pid else {
                queued.remove(at: i)
                insert(Candidate(slot: slot, pid: pid, reason: reason, detail: detail, since: now))
                return .queued
            }
            guard Self.priority(reason) > Self.priority(old.reason) else { return .alreadyQueued }
            queued.remove(at: i)
            insert(Candidate(slot: slot, pid: pid, reason: reason, detail: detail, since: old.since))
            return .upgraded(from: old.reason)
        }
        insert(Candidate(slot: slot, pid: pid, reason: reason, detail: detail, since: now))
        return .queued
    }

    /// What starts now. `blocked`: a deploy, reload, rollback or roll-ahead runs or waits (nothing
    /// starts); `autoWidth`: the planner's width for `auto`; `settling(slot)`: whether the slot's
    /// new worker is still in its stability window in the rollout running the recycles (its
    /// candidate stays queued, the ones behind it may start); `serving(slot, pid)`: whether `pid`
    /// still serves `slot` (a queued candidate for a worker gone is dropped).
    public mutating func next(
        now: Duration, blocked: Bool, autoWidth: Int, settling: (Int) -> Bool = { _ in false }, serving: (Int, Int32) -> Bool
    ) -> Plan {
        var plan = Plan()
        guard !blocked else { return plan }
        let budget = budget(autoWidth: autoWidth)
        var i = 0
        while recycling.count < budget, i < queued.count {
            if settling(queued[i].slot) {
                i += 1
                continue
            }
            if let last = lastStart, now - last < spacing {
                plan.wakeAt = last + spacing
                break
            }
            let candidate = queued.remove(at: i)
            guard serving(candidate.slot, candidate.pid) else {
                plan.dropped.append(candidate)
                continue
            }
            recycling[candidate.slot] = candidate
            self.settling[candidate.slot] = nil
            lastStart = now
            plan.starts.append(candidate)
        }
        return plan
    }

    /// The recycle of `slot` ended (its new worker serves, or it failed): its place in the budget
    /// is free. Returns the candidate it was (recycling, or freed and still ``settling``), nil
    /// when the slot was neither.
    @discardableResult
    public mutating func finished(slot: Int) -> Candidate? {
        recycling.removeValue(forKey: slot) ?? settling.removeValue(forKey: slot)
    }

    /// The rollout running the recycles moved on: every recycling slot it has replaced (`done`:
    /// the new worker serves, the old one drained) frees its place now, while the new worker's
    /// stability window may still run: the window holds the rollout (a worker that dies in it
    /// fails it), not the budget, so the next recycle starts without waiting one window per
    /// slot and recycling keeps up with a fast leak. A freed slot whose window still runs is
    /// kept as ``settling`` until ``rolloutSettled(_:)``. Returns the candidates freed, by slot.
    public mutating func rolloutProgressed(_ rollout: RollingRestart) -> [Candidate] {
        let freed = recycling.keys.filter { rollout.phase(of: $0) == .done }.sorted()
        let inWindow = Set(rollout.settlingSlots)
        return freed.compactMap { slot in
            guard let c = recycling.removeValue(forKey: slot) else { return nil }
            if inWindow.contains(slot) { settling[slot] = c }
            return c
        }
    }

    /// The ``settling`` recycles whose new worker passed its stability window in `rollout`: the
    /// recycle succeeded. Returns them, by slot.
    public mutating func rolloutSettled(_ rollout: RollingRestart) -> [Candidate] {
        let inWindow = Set(rollout.settlingSlots)
        let passed = settling.keys.filter { rollout.phase(of: $0) == .done && !inWindow.contains($0) }.sorted()
        return passed.compactMap { settling.removeValue(forKey: $0) }
    }

    /// Takes `slot` out of the queue (the reason that asked no longer holds); returns it.
    @discardableResult
    public mutating func withdraw(slot: Int) -> Candidate? {
        guard let i = queued.firstIndex(where: { $0.slot == slot }) else { return nil }
        return queued.remove(at: i)
    }

    /// Queues `candidate` after every one of higher or equal priority submitted before it.
    private mutating func insert(_ candidate: Candidate) {
        let p = Self.priority(candidate.reason)
        let i = queued.firstIndex { Self.priority($0.reason) < p || (Self.priority($0.reason) == p && $0.since > candidate.since) }
        queued.insert(candidate, at: i ?? queued.endIndex)
    }
}
