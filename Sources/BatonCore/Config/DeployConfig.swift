/// How a worker is replaced.
public enum DeployStrategy: String, Sendable, Equatable, Codable {
    /// Surge when the measured headroom allows, replace otherwise.
    case auto
    /// Start the new worker, wait until it is ready, then drain the old one.
    case surge
    /// Drain the old worker, then start the new one.
    case replace
}

/// `max_surge`: a number of slots, or `auto` (as many as memory and the boot budget allow).
public enum SurgeWidth: Sendable, Equatable, Codable {
    /// As wide as memory and the boot budget allow.
    case auto
    /// At most this many slots at once (at least 1).
    case fixed(Int)
}

/// `[deploy]`: how rollouts proceed.
public struct DeployConfig: Sendable, Equatable, Codable {
    /// `strategy`: auto, surge or replace.
    public var strategy: DeployStrategy
    /// `max_surge`: `"auto"` (the default: as many slots at once as memory and the boot
    /// budget allow, see ``RolloutPlanner``) or at most this many extra workers, 1...workers.
    public var surgeWidth: SurgeWidth
    /// `max_surge` as a number: the fixed width, or 1 (the narrowest surge) for `"auto"`.
    public var maxSurge: Int {
        get {
            if case .fixed(let n) = surgeWidth { return n }
            return 1
        }
        set { surgeWidth = .fixed(newValue) }
    }
    /// `max_unavailable`: slots without a serving worker at once under replace (default 1).
    public var maxUnavailable: Int = 1
    /// `canary`: replace one worker first and stop there if it fails.
    public var canary: Bool
    /// `worker_footprint`: the memory one new worker needs, used until one has been measured.
    public var workerFootprint: UInt64?
    /// `timeout`: the whole deploy's deadline; nil = none.
    public var timeout: Duration?
    /// `keep_releases`: how many release folders retention keeps, at least 2 (the current
    /// and previous ones are never removed whatever their age).
    public var keepReleases: Int
    /// `releases_directory`: the folder holding one subfolder per release. Set, it turns
    /// retention on: after each successful deploy baton removes all but the newest
    /// `keep_releases` of them. Unset, nothing is ever removed.
    public var releasesDirectory: String?
    /// `stability_window`: how long each new worker must stay up after becoming ready before
    /// its slot counts as replaced (the deploy is committed only after every window); zero = off.
    public var stabilityWindow: Duration = .seconds(2)

    /// Creates a deploy section with the config file's defaults.
    public init(
        strategy: DeployStrategy = .auto, maxSurge: Int? = nil, canary: Bool = true,
        workerFootprint: UInt64? = nil, timeout: Duration? = nil, keepReleases: Int = 5,
        releasesDirectory: String? = nil
    ) {
        self.strategy = strategy
        self.surgeWidth = maxSurge.map { .fixed($0) } ?? .auto
        self.canary = canary
        self.workerFootprint = workerFootprint
        self.timeout = timeout
        self.keepReleases = keepReleases
        self.releasesDirectory = releasesDirectory
    }
}
