/// The periodic restart policy between deploys, as a pure state machine: the supervisor feeds
/// it a ``Tick`` every `memory.check_interval` (and the end of each replacement it ordered) and
/// executes the ``Decision`` it returns. Time is an explicit monotonic `now`, so tests drive it
/// with a fake clock.
///
/// Rules, in the order they are tried (the first that picks a worker wins):
/// 1. **worker-limit**: a worker whose USS passed `memory.worker_limit` by its growth (under
///    it when fresh), at least one check interval old, `min_worker_age` or not; one born over
///    it (or whose fresh size is unknown) once it is `min_worker_age` old, and in a slot whose
///    last such replacement was born over it too, only once it grew as well (``Worker/hasGrown``;
///    one as large replaces it); the largest first.
/// 2. **memory-threshold**: the total passed `threshold × budget` — the workers' summed PSS, or
///    the cgroup's working set when the budget is the cgroup's limit, whichever is higher —
///    and the worker with the largest USS among those that grew since ready goes
///    (``Worker/hasGrown``: one at its fresh size frees nothing; none grown, none goes), while
///    the workers' growth could bring the total under the line (memory outside them, which
///    restarts cannot free, holds the rule back).
/// 3. **leak-prediction**: a worker whose fitted growth reaches `worker_limit` within the
///    horizon; the soonest first. Then the total: when the workers' fitted growth takes it past
///    `threshold × budget` within the horizon, the largest grown worker goes. The
///    horizon is the time until the policy sees fresh figures again (`smaps_every` check
///    intervals: PSS/USS are read that often) plus the time a replacement takes to be ready
///    (``Tick/bootTime``, measured): a replacement ordered later would come too late.
/// 4. **age**: a worker older than `rolling.max_age` plus its slot's ``Splay`` offset; the most
///    overdue first.
///
/// Invariants (the tests check each):
/// - At most one decision per tick, and at most ``Settings/concurrency`` replacements ordered
///   and neither serving (``Tick/settling``) nor ended (``replacementFinished(slot:now:)`` or
///   ``replacementFailed(slot:now:)``): with the default of 1, never two at once. A slot whose
///   replacement has not ended (settling in its window included) is never picked again,
///   and the memory rules count the USS of the workers being replaced as coming back
///   (the threshold is measured without what they free), so a second replacement is ordered only when
///   the first will not be enough. The daemon ticks again at once while one more may go.
/// - Nothing while a deploy or reload runs (``Tick/operationRunning``).
/// - Nothing unless every slot has a ready worker or is being recycled (by this policy, or by
///   another reason through the recycling engine: ``Tick/recycling``), with one exception: a
///   slot without any worker that nobody replaces (a crash in its backoff, a spawn that
///   failed) holds back the age rule only. The memory rules go on then (they head off the OOM
///   killer, which takes a worker without a drain and may put more slots in backoff), while
///   no other worker is starting and never on the last serving worker. With the replace
///   strategy the engine's budget bounds the slots it empties at once.
/// - Memory rules only look at workers at least `min_worker_age` (and one check interval) old:
///   a young worker is never replaced for the total, so a slot cannot cycle. Only
///   worker-limit takes a younger one (one check interval old), and only past the limit by
///   its growth: its replacement starts under it.
/// - Memory rules decide only on measured figures (``Tick/detailed``, PSS/USS read for this
///   tick). On a cheap tick where they would fire on older figures, the decision is
///   ``Decision/measure``: read smaps now and tick again. Since that read follows the end of
///   the previous replacement, the next memory decision always sees the memory it freed.
/// - A slot whose replacement failed is left alone for `min_worker_age`.
public struct RestartPolicy: Sendable, Equatable {
    /// The policy's configuration.
    public struct Settings: Sendable, Equatable {
        /// `app.workers`: N, the slots that must all be serving before a worker is replaced by age.
        public var workers: Int
        /// `rolling.max_age`; nil = no restarts by age.
        public var maxAge: Duration?
        /// `rolling.splay`.
        public var splay: Duration
        /// The host's name, which rotates the splay offsets.
        public var hostname: String
        /// `memory.threshold`, a fraction of the budget in (0, 1].
        public var threshold: Double
        /// `memory.worker_limit` (USS); nil = no per-worker limit and no leak prediction.
        public var workerLimit: UInt64?
        /// `memory.min_worker_age`.
        public var minWorkerAge: Duration
        /// `memory.check_interval`: the horizon of the leak prediction.
        public var checkInterval: Duration
        /// Replacements ordered and not ended at once, at most (the recycling budget; at least 1).
        public var concurrency: Int = 1
        /// `memory.smaps_every`: PSS/USS are read every this many checks (at least 1).
        public var smapsEvery: Int = 1

        /// Creates settings.
        public init(
            workers: Int, maxAge: Duration? = nil, splay: Duration = .zero, hostname: String = "",
            threshold: Double = 0.9, workerLimit: UInt64? = nil, minWorkerAge: Duration = .seconds(300),
            checkInterval: Duration = .seconds(5)
        ) {
            self.workers = workers
            self.maxAge = maxAge
            self.splay = splay
            self.hostname = hostname
            self.threshold = threshold
            self.workerLimit = workerLimit
            self.minWorkerAge = minWorkerAge
            self.checkInterval = checkInterval
        }

        /// The settings of a config, on `hostname`.
        public init(config: BatonConfig, hostname: String) {
            self.init(
                workers: config.app.workers, maxAge: config.rolling.maxAge, splay: config.rolling.splay,
                hostname: hostname, threshold: config.memory.threshold, workerLimit: config.memory.workerLimit,
                minWorkerAge: config.memory.minWorkerAge, checkInterval: config.memory.checkInterval)
            smapsEvery = max(1, config.memory.smapsEvery)
        }
    }

    /// What the policy knows of one slot's serving (or starting) worker.
    public struct Worker: Sendable, Equatable {
        /// The slot, 0..<N.
        public var slot: Int
        /// The worker's pid (for messages).
        public var pid: Int32
        /// When it was started (monotonic clock).
        public var startedAt: Duration
        /// Whether it passed its readiness check.
        public var ready: Bool
        /// The tree's memory: RSS from this tick, PSS/USS from the last detailed read.
        public var memory: MemorySample?
        /// Its USS samples, for the leak rate.
        public var history: MemoryHistory
        /// Its USS when it became ready (or its tree settled), or its lowest since; nil when not measured.
        public var ussAtReady: UInt64?

        /// Creates a worker record.
        public init(
            slot: Int, pid: Int32, startedAt: Duration, ready: Bool = true, memory: MemorySample? = nil,
            history: MemoryHistory = MemoryHistory(), ussAtReady: UInt64? = nil
        ) {
            self.slot = slot
            self.pid = pid
            self.startedAt = startedAt
            self.ready = ready
            self.memory = memory
            self.history = history
            self.ussAtReady = ussAtReady
        }

        /// Whether replacing it would give memory back: its USS grew since ready by at least
        /// 1 MiB and 5 % (true when either figure is unknown). A worker at its fresh size is
        /// replaced by one of the same size: the total does not move, and a threshold crossed
        /// by memory outside the workers would have them restarted one after another for nothing.
        public var hasGrown: Bool {
            guard let start = ussAtReady, let now = memory?.uss else { return true }
            return WorkerGrowth.isGrowth(from: start, to: now)
        }

        /// What replacing it gives back at most: its USS growth since ready (its whole USS when
        /// either figure is unknown).
        var growth: UInt64 {
            guard let now = memory?.uss else { return 0 }
            guard let start = ussAtReady else { return now }
            return now - min(start, now)
        }
    }

    /// One check.
    public struct Tick: Sendable, Equatable {
        /// Now (monotonic clock).
        public var now: Duration
        /// One entry per slot: its serving worker, or the one starting there.
        public var workers: [Worker]
        /// The budget the threshold is a fraction of.
        public var budget: EffectiveBudget
        /// The service's cgroup figures, if known.
        public var cgroup: CgroupMemory?
        /// True when every worker's PSS/USS (and the cgroup figures) were read for this tick.
        public var detailed: Bool
        /// True while a deploy, rollback or reload runs: the policy stays silent.
        public var operationRunning: Bool
        /// How long a new worker takes from start to ready (the slowest recent boot); nil until
        /// measured. Part of the prediction horizon.
        public var bootTime: Duration?
        /// Slots whose recycle serves while its new worker is still in its stability window
        /// (``RecyclingEngine/settling``, which owns that state): a replacement this policy
        /// ordered there no longer counts against ``Settings/concurrency``, but has not ended.
        public var settling: Set<Int>
        /// Slots the recycling engine is recycling now, for any reason (a `max_requests` recycle
        /// too): like the policy's own, they count as serving (under replace one has no ready
        /// worker until its new one is), and their worker is not picked.
        public var recycling: Set<Int> = []

        /// Creates a tick.
        public init(
            now: Duration, workers: [Worker], budget: EffectiveBudget, cgroup: CgroupMemory? = nil,
            detailed: Bool = true, operationRunning: Bool = false, bootTime: Duration? = nil, settling: Set<Int> = []
        ) {
            self.bootTime = bootTime
            self.settling = settling
            self.now = now
            self.workers = workers
            self.budget = budget
            self.cgroup = cgroup
            self.detailed = detailed
            self.operationRunning = operationRunning
        }
    }

    /// What the supervisor must do after a tick.
    public enum Decision: Sendable, Equatable {
        /// Replace the slot's worker (one at a time, readiness-gated), then call
        /// ``RestartPolicy/replacementFinished(slot:now:)`` or ``RestartPolicy/replacementFailed(slot:now:)``.
        /// `detail` is the line to log.
        case replace(slot: Int, reason: RestartReason, detail: String)
        /// Read every worker's PSS/USS (smaps_rollup) now and tick again with `detailed`: a
        /// memory rule would fire on older figures.
        case measure

        /// The slot to replace, if any.
        public var slot: Int? {
            if case .replace(let slot, _, _) = self { return slot }
            return nil
        }

        /// The reason of a replacement, if any.
        public var reason: RestartReason? {
            if case .replace(_, let reason, _) = self { return reason }
            return nil
        }
    }

    /// Where the policy is.
    public enum State: Sendable, Equatable {
        /// Free to decide.
        case idle
        /// It ordered the replacement of `slot` at `since` and waits for its end.
        case replacing(slot: Int, since: Duration)
    }

    /// The configuration.
    public private(set) var settings: Settings
    /// Idle, or waiting for a replacement to end (the first ordered, when several have not).
    public var state: State {
        guard let first = replacing.min(by: { ($0.value, $0.key) < ($1.value, $1.key) }) else { return .idle }
        return .replacing(slot: first.key, since: first.value)
    }
    /// Slots whose replacement was ordered and has not ended, with when it was ordered. The
    /// policy owns only its orders: whether one is queued, running or settling in its window is
    /// the recycling engine's, which each ``Tick`` carries (``Tick/settling``).
    public private(set) var replacing: [Int: Duration] = [:]
    /// Slots left alone until the given time (their replacement failed).
    private var cooldown: [Int: Duration] = [:]
    /// From the last tick with fresh figures: the total over `threshold × budget` by more than
    /// the workers' growth since ready, so no restart could bring it under (memory outside the
    /// workers, or their fresh size), in words; else nil. The total's rules restart none then,
    /// which the supervisor says (a review: the rules were silent, and the operator saw the
    /// total over the line and no restart).
    public private(set) var heldOverTheLine: String?
    /// Slots whose worker was replaced for `worker_limit` while over it from birth: a worker
    /// born over it there again is left alone (until one is born under it).
    private(set) var bornOverLimit: Set<Int> = []

    /// Creates an idle policy.
    public init(settings: Settings) {
        self.settings = settings
    }

    /// When `slot`'s worker is due by age: `max_age` plus the slot's splay offset; nil when
    /// rolling restarts are off.
    public func ageLimit(slot: Int) -> Duration? {
        settings.maxAge.map {
            $0 + Splay.offset(hostname: settings.hostname, slot: slot, workers: settings.workers, splay: settings.splay)
        }
    }

    /// New settings (a reloaded config); the state (a replacement in flight, the slots
    /// cooling down after a failed one) is kept.
    public mutating func reconfigure(_ settings: Settings) {
        self.settings = settings
    }

    /// Evaluates one check: at most one decision.
    public mutating func tick(_ tick: Tick) -> Decision? {
        let inFlight = InFlight(tick, replacing: replacing)
        guard inFlight.slots.count < max(1, settings.concurrency), !tick.operationRunning else { return nil }
        // A slot this policy is replacing counts: under replace it has no ready worker until its
        // new one is, and that gap is the budget's (`concurrency`) to bound.
        // A recycle another reason runs counts too (a policy audit: under replace, max-requests
        // recycles held the memory rules back: the first worker-limit order at 133.8 MiB against
        // 104.7 MiB without them).
        let readySlots = Set(tick.workers.lazy.filter(\.ready).map(\.slot)).union(inFlight.slots).union(tick.recycling)
        let everySlotServes = readySlots.count >= settings.workers
        cooldown = cooldown.filter { $0.value > tick.now }
        // A slot settling in its window is not picked either: its order has not ended.
        let eligible = tick.workers.filter {
            $0.ready && cooldown[$0.slot] == nil && replacing[$0.slot] == nil && !tick.recycling.contains($0.slot)
        }

        // A slot whose worker is born under `worker_limit` again may be replaced for it again.
        if let limit = settings.workerLimit {
            for w in tick.workers where (w.ussAtReady ?? .max) < limit { bornOverLimit.remove(w.slot) }
        }
        if tick.detailed { heldOverTheLine = overThresholdBeyondGrowth(tick, inFlight) }
        // A worker starting holds every rule back (it serves soon: the readiness timeout bounds
        // its boot). A slot without any worker (a crash in backoff, a spawn that failed) holds
        // back only the age rule: the memory rules head off the OOM killer, which takes a worker
        // without a drain (and, killing one that starts, puts its slot in backoff), but they
        // never take the last serving worker.
        let othersServe = { (pick: Int) in
            tick.workers.contains { w in
                w.ready && w.slot != pick && !inFlight.slots.contains(w.slot) && !tick.recycling.contains(w.slot)
            }
        }
        let starting = tick.workers.contains { !$0.ready && !inFlight.slots.contains($0.slot) && !tick.recycling.contains($0.slot) }
        if let pick = memoryRule(tick, eligible, inFlight), everySlotServes || (!starting && othersServe(pick.slot)) {
            guard tick.detailed else { return .measure }
            if pick.reason == .workerLimit, let limit = settings.workerLimit,
                let fresh = tick.workers.first(where: { $0.slot == pick.slot })?.ussAtReady, fresh >= limit
            {
                bornOverLimit.insert(pick.slot)
            }
            return order(pick, now: tick.now)
        }
        if everySlotServes, let pick = ageRule(tick, eligible) { return order(pick, now: tick.now) }
        return nil
    }

    /// The replacement ordered for `slot` is done: its new worker is ready (and passed its
    /// stability window, when one is awaited).
    public mutating func replacementFinished(slot: Int, now: Duration) {
        replacing[slot] = nil
    }

    /// The replacement ordered for `slot` failed (its new worker did not become ready, or died
    /// inside its stability window, after it served); the slot is left alone for `min_worker_age`.
    public mutating func replacementFailed(slot: Int, now: Duration) {
        guard replacing.removeValue(forKey: slot) != nil else { return }
        cooldown[slot] = now + max(settings.minWorkerAge, settings.checkInterval)
    }

    /// The one view of the replacements in flight that every rule takes: the slots whose
    /// replacement this policy ordered and that do not serve yet (not ``Tick/settling``). They
    /// count against ``Settings/concurrency``; their workers' memory is on its way out, so the
    /// threshold rules count it as coming back and their growth not at all. A settling slot's
    /// worker is its new one, serving: its memory stays and its growth counts, as any other's.
    struct InFlight {
        /// The slots.
        let slots: Set<Int>
        /// What they free: each old worker's USS (at most its PSS; its PSS when no USS is
        /// known), so a further replacement is ordered only if the rest is still over the line.
        /// Not its whole PSS: the shared part of a tree (a preloading master's app, the pages a
        /// mold shares) comes back with the new worker, and counting it as freed would hold the
        /// next replacement back while the total stays over the line.
        let comingBack: UInt64

        init(_ tick: Tick, replacing: [Int: Duration]) {
            let slots = Set(replacing.keys).subtracting(tick.settling)
            self.slots = slots
            comingBack = tick.workers.lazy.filter { slots.contains($0.slot) }.reduce(UInt64(0)) { sum, w in
                let pss = w.memory?.pss ?? 0
                return sum + min(pss, w.memory?.uss ?? pss)
            }
        }
    }

    /// Records an order and returns it.
    private mutating func order(_ pick: (slot: Int, reason: RestartReason, detail: String), now: Duration) -> Decision {
        replacing[pick.slot] = now
        return .replace(slot: pick.slot, reason: pick.reason, detail: pick.detail)
    }
}
