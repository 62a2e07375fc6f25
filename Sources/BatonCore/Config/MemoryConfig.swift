/// `memory.budget`: the memory the app may use.
public enum MemoryBudget: Sendable, Equatable, Codable {
    /// The effective cgroup limit, else `MemTotal`.
    case auto
    /// A fixed number of bytes.
    case bytes(UInt64)
}

/// `[memory]`: the budget, the pre-deploy reserve and the threshold restart policy.
public struct MemoryConfig: Sendable, Equatable, Codable {
    /// `budget`: `"auto"` or a size.
    public var budget: MemoryBudget
    /// `reserve`: kept free for the deploy's own tooling.
    public var reserve: UInt64
    /// `threshold`: the fraction of the budget, in (0, 1], above which the largest worker restarts.
    public var threshold: Double
    /// `worker_limit`: a worker whose USS exceeds this is restarted; nil = no limit.
    public var workerLimit: UInt64?
    /// `check_interval`: how often memory is sampled (> 0).
    public var checkInterval: Duration
    /// `min_worker_age`: younger workers are never restarted for memory.
    public var minWorkerAge: Duration
    /// `smaps_every`: read `smaps_rollup` every Nth sample (it is costly), at least 1.
    public var smapsEvery: Int
    /// `reservation_margin`: what `preflight --roll-ahead` keeps free on top of `--need` and
    /// the growth it expects, for what the figures miss (kernel memory, page tables, a
    /// replacement's first requests).
    public var reservationMargin: UInt64 = 64 << 20
    /// `mergeable`: every worker is marked mergeable for KSM (PR_SET_MEMORY_MERGE) before it
    /// execs, so the host's ksmd may merge identical pages across workers that cannot share
    /// them by forking.
    public var mergeable = false

    /// Creates a memory section with the config file's defaults.
    public init(
        budget: MemoryBudget = .auto, reserve: UInt64 = 512 << 20, threshold: Double = 0.9,
        workerLimit: UInt64? = nil, checkInterval: Duration = .seconds(5),
        minWorkerAge: Duration = .seconds(300), smapsEvery: Int = 6
    ) {
        self.budget = budget
        self.reserve = reserve
        self.threshold = threshold
        self.workerLimit = workerLimit
        self.checkInterval = checkInterval
        self.minWorkerAge = minWorkerAge
        self.smapsEvery = smapsEvery
    }
}
