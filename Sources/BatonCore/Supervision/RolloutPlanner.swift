/// How the next batch of a rollout proceeds (surge or replace, and how many slots may be in
/// replacement at once), decided again before every step from the memory measured then.
///
/// Rules, for `strategy = "auto"`:
/// - The new workers that still fit are the largest `k` such that `k` more workers of the
///   footprint fit under every limit (``PreflightCheck``), minus the new workers still
///   booting: a booting worker has not reached its footprint yet, so the headroom measured
///   now does not count it. Ready new workers are in the measured headroom already.
/// - With `max_surge = "auto"`, at most `bootBudget` new workers boot at once (``BootBudget``:
///   the CPU count over the CPU share of a boot): more computing boots than cores only slow
///   every boot down and take CPU from the workers that serve. A number replaces that bound:
///   at most that many slots at once.
/// - With room for at least one more new worker: surge, and the batch widens to what fits
///   within those bounds. With none while slots are in flight: start nothing until one is
///   done. With none and nothing in flight: replace, at most
///   `max_unavailable` slots without a serving worker. Since the plan is made again at every
///   step, a deploy that starts with replace switches to surge once the memory its drained
///   workers gave back allows it, and back to replace if memory gets tight.
/// - baton's descriptors bound it too (``DescriptorRoom``): no more new workers at once than
///   its descriptor table can start; with room for none, the same as no memory for one.
/// - Memory that cannot be read: surge one slot at a time (nothing known says it does not
///   fit). A footprint that is unknown (no worker measured, `worker_footprint` not set):
///   replace, as the pre-deploy check says.
/// - `strategy = "surge"`: surge, `max_surge` wide (auto: as wide as fits, at least one).
///   `strategy = "replace"`: replace, `max_unavailable` wide.
public struct RolloutPlanner: Sendable, Equatable {
    /// `max_surge`: a number of slots, or `auto`.
    public typealias Width = SurgeWidth

    /// What the planner knows at one step.
    public struct Figures: Sendable, Equatable {
        /// The headroom under every limit now; nil when memory cannot be read.
        public var headroom: Headroom?
        /// Memory one new worker takes; nil when unknown.
        public var footprint: UInt64?
        /// Commit charge of one new worker; nil = the footprint.
        public var commitPerWorker: UInt64?
        /// Slots in replacement now.
        public var inFlight: Int
        /// New workers started and not ready yet.
        public var booting: Int
        /// Slots not started yet (bounds how many more are looked for).
        public var pending: Int
        /// baton's descriptor table now; nil when unknown (no bound from it).
        public var descriptors: DescriptorRoom?

        /// Creates figures.
        public init(
            headroom: Headroom?, footprint: UInt64?, commitPerWorker: UInt64? = nil, inFlight: Int = 0, booting: Int = 0, pending: Int = 1024,
            descriptors: DescriptorRoom? = nil
        ) {
            self.headroom = headroom
            self.footprint = footprint
            self.commitPerWorker = commitPerWorker
            self.inFlight = inFlight
            self.booting = booting
            self.pending = max(0, pending)
            self.descriptors = descriptors
        }
    }

    /// The plan for the next step.
    public struct Step: Sendable, Equatable {
        /// The strategy for slots started now.
        public var strategy: RollingRestart.Strategy
        /// Slots in replacement at once, in-flight ones included (at least 1).
        public var width: Int
        /// Why, for progress lines.
        public var reason: String
        /// Starts nothing until a slot in flight is done: the rollout keeps the strategy it has.
        public var holds: Bool

        /// Creates a step.
        public init(strategy: RollingRestart.Strategy, width: Int, reason: String, holds: Bool = false) {
            self.strategy = strategy
            self.width = width
            self.reason = reason
            self.holds = holds
        }
    }

    /// `[deploy] strategy` or `--strategy`.
    public var strategy: DeployStrategy
    /// `[deploy] max_surge` or `--max-surge`.
    public var maxSurge: Width
    /// `[deploy] max_unavailable`: slots without a serving worker at once under replace.
    public var maxUnavailable: Int
    /// New workers booting at once, at most.
    public var bootBudget: Int

    /// Creates a planner; `bootBudget` and `maxUnavailable` are at least 1.
    public init(strategy: DeployStrategy, maxSurge: Width, maxUnavailable: Int = 1, bootBudget: Int) {
        self.strategy = strategy
        if case .fixed(let n) = maxSurge {
            self.maxSurge = .fixed(max(1, n))
        } else {
            self.maxSurge = .auto
        }
        self.maxUnavailable = max(1, maxUnavailable)
        self.bootBudget = max(1, bootBudget)
    }

    /// The next step.
    public func step(_ figures: Figures) -> Step {
        switch strategy {
        case .replace:
            return Step(strategy: .replace, width: maxUnavailable, reason: "requested")
        case .surge:
            // Surge was asked for: it runs as asked, and the line says when memory has no room.
            let fit = fitting(figures)
            if case .fixed(let n) = maxSurge {
                // Memory as asked, but no more than baton's descriptors can start (a re-audit:
                // `--max-surge 3` with descriptors for 1 more failed at its second spawn,
                // `placing descriptors: Too many open files`, where auto started 1 and succeeded).
                let (more, room) = withinDescriptors(figures, starting: n - figures.inFlight)
                if more <= 0, figures.inFlight > 0 {
                    return Step(strategy: .surge, width: figures.inFlight, reason: "requested" + room, holds: true)
                }
                return Step(
                    strategy: .surge, width: max(1, figures.inFlight + more),
                    reason: "requested" + room + beyondRoom(figures, fit: fit, starting: max(1, more)))
            }
            let width = max(1, figures.inFlight + startable(figures, fitting: fit ?? 1))
            return Step(
                strategy: .surge, width: width, reason: "requested, as wide as fits" + beyondRoom(figures, fit: fit, starting: width - figures.inFlight))
        case .auto:
            guard figures.headroom != nil else {
                let width: Int
                if case .fixed(let n) = maxSurge { width = n } else { width = 1 }
                return Step(strategy: .surge, width: width, reason: "auto: memory unknown")
            }
            guard let fit = fitting(figures) else {
                return Step(strategy: .replace, width: maxUnavailable, reason: "auto: the worker footprint is unknown")
            }
            // Nothing more fits while slots are in flight: hold (start nothing) until one is done,
            // then plan again with the memory it gave back.
            if fit == 0, figures.inFlight > 0 {
                return Step(strategy: .surge, width: figures.inFlight, reason: "auto: no more fit until a slot in flight is done", holds: true)
            }
            guard fit > 0 else {
                return Step(strategy: .replace, width: maxUnavailable, reason: "auto: a surge of one " + oneMore(figures).summary)
            }
            // The same for baton's descriptors: a replace slot gives its old worker's back first.
            if let descriptors = figures.descriptors, descriptors.workers == 0 {
                if figures.inFlight > 0 {
                    return Step(
                        strategy: .surge, width: figures.inFlight,
                        reason: "auto: baton's descriptors leave no room for another new worker until a slot in flight is done (\(descriptors.summary))",
                        holds: true)
                }
                return Step(
                    strategy: .replace, width: maxUnavailable, reason: "auto: baton's descriptors leave no room for an extra worker (\(descriptors.summary))")
            }
            // Width 0 more (the boot budget is in use) keeps the in-flight slots going, starts none.
            let more = startable(figures, fitting: fit)
            let bound = figures.descriptors.flatMap { $0.workers < widthBound(figures, fitting: fit) ? $0 : nil }
            let room = bound.map { ", descriptors for \($0.workers) more (\($0.summary))" } ?? ""
            // A fixed width bounds it, not the boot budget (a reload audit: `max_surge = 1` planned
            // `1 slot at once (auto: 2 more fit, 32 boots at once)`).
            var bounds = "\(bootBudget) boot\(bootBudget == 1 ? "" : "s") at once"
            if case .fixed(let n) = maxSurge { bounds = "max_surge \(n)" }
            return Step(strategy: .surge, width: max(1, figures.inFlight + more), reason: "auto: \(fit) more fit, \(bounds)" + room)
        }
    }

    /// Of `starting` new workers asked for, how many baton's descriptors can start, and the
    /// reason's words when they bound it ("" when not).
    private func withinDescriptors(_ figures: Figures, starting: Int) -> (Int, String) {
        guard let room = figures.descriptors, room.workers < starting else { return (starting, "") }
        return (room.workers, ", descriptors for \(room.workers) more (\(room.summary))")
    }

    /// New workers that may start now: what fits, within a fixed width (the user's choice)
    /// or else the boot budget.
    private func startable(_ figures: Figures, fitting fit: Int) -> Int {
        max(0, min(widthBound(figures, fitting: fit), figures.descriptors?.workers ?? Int.max))
    }

    /// New workers that may start now before baton's descriptors are counted.
    private func widthBound(_ figures: Figures, fitting fit: Int) -> Int {
        if case .fixed(let n) = maxSurge { return min(fit, n - figures.inFlight) }
        return min(fit, bootBudget - figures.booting)
    }

    /// For a surge asked for: "" when the `starting` new workers fit, else what the pre-deploy
    /// check says of them ("; memory has room for 0 more: 1 more does not fit: need …").
    private func beyondRoom(_ figures: Figures, fit: Int?, starting: Int) -> String {
        guard let fit, let headroom = figures.headroom, starting > fit else { return "" }
        let plan = DeployPlan(
            strategy: .surge, maxSurge: figures.booting + starting, footprint: figures.footprint, commitPerWorker: figures.commitPerWorker)
        return "; memory has room for \(fit) more: \(starting) more " + PreflightCheck.verdict(plan, strategy: .surge, headroom: headroom).summary
    }

    /// The pre-deploy check's verdict on one more new worker beside the booting ones.
    private func oneMore(_ figures: Figures) -> PreflightVerdict {
        let plan = DeployPlan(
            strategy: .surge, maxSurge: figures.booting + 1, footprint: figures.footprint, commitPerWorker: figures.commitPerWorker)
        return PreflightCheck.verdict(plan, strategy: .surge, headroom: figures.headroom ?? Headroom(limits: []))
    }

    /// How many more new workers fit beside the running ones now (booting ones deducted);
    /// nil when the footprint or the headroom is unknown.
    public func fitting(_ figures: Figures) -> Int? {
        guard let headroom = figures.headroom, let footprint = figures.footprint else { return nil }
        // The largest k that fits, by doubling then bisecting; no more than the slots left need.
        let cap = figures.booting + max(1, figures.pending)
        func fits(_ k: Int) -> Bool {
            guard k > 0 else { return true }
            let plan = DeployPlan(strategy: .surge, maxSurge: k, footprint: footprint, commitPerWorker: figures.commitPerWorker)
            return PreflightCheck.verdict(plan, strategy: .surge, headroom: headroom).fits
        }
        var high = 1
        while high <= cap, fits(high) { high *= 2 }
        high = min(high, cap + 1)
        var low = 0  // fits(low) holds; fits(high) does not (or high is the cap)
        while high - low > 1 {
            let mid = (low + high) / 2
            if fits(mid) { low = mid } else { high = mid }
        }
        return max(0, low - figures.booting)
    }
}
