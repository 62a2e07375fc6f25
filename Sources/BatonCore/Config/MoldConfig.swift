/// `[app] mode`: how a worker comes to be.
public enum AppMode: String, Sendable, Equatable, Codable {
    /// Every worker is `[app] command`, fork/exec'd by baton.
    case exec
    /// `[app] command` starts one mold per release, which loads the app once and forks the
    /// workers when baton asks (docs/MOLD.md).
    case mold
}

/// `[mold]`: the mold process of mold mode.
public struct MoldConfig: Sendable, Equatable, Codable {
    /// `start_timeout`: a mold not ready (READY=1) this long after it started is killed.
    public var startTimeout: Duration = .seconds(60)
    /// `spawn_timeout`: a mold that has not answered a spawn request this long is killed and
    /// replaced (its serving workers are untouched).
    public var spawnTimeout: Duration = .seconds(10)
    /// `refork_after_requests`: promote a worker that served this many requests to be the next
    /// mold; 0 = off.
    public var reforkAfterRequests: Int = 0
    /// `refork_after`: promote a worker this old to be the next mold; nil = off.
    public var reforkAfter: Duration?

    /// Creates a mold section with the config file's defaults.
    public init() {}
}
