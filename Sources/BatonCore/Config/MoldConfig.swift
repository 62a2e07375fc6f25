import TOMLKit

/// `[app] mode`: how a worker comes to be.
public enum AppMode: String, Sendable, Equatable {
    /// Every worker is `[app] command`, fork/exec'd by baton.
    case exec
    /// `[app] command` starts one mold per release, which loads the app once and forks the
    /// workers when baton asks (docs/MOLD.md).
    case mold
}

/// `[mold]`: the mold process of mold mode.
public struct MoldConfig: Sendable, Equatable {
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

/// The longest `[mold]` timeout: one day (a typo such as "60000h" is an error, not a hang).
let moldMaxTimeout = Duration.seconds(86_400)

extension ConfigReader {
    /// Reads `[mold]`.
    mutating func readMold(_ s: ConfigSection) -> MoldConfig {
        var mold = MoldConfig()
        mold.startTimeout = read(s, "start_timeout", Self.moldTimeout) ?? mold.startTimeout
        mold.spawnTimeout = read(s, "spawn_timeout", Self.moldTimeout) ?? mold.spawnTimeout
        mold.reforkAfterRequests =
            read(s, "refork_after_requests", Convert.integer(in: 0...1_000_000_000)) ?? mold.reforkAfterRequests
        mold.reforkAfter = read(s, "refork_after", Convert.duration(positive: true))
        return mold
    }

    /// A positive duration of at most a day.
    static func moldTimeout(_ raw: TOMLValueConvertible) -> Conversion<Duration> {
        switch Convert.duration(positive: true)(raw) {
        case .value(let d) where d > moldMaxTimeout:
            return .invalid("must be at most 24h, got \(Convert.describeValue(raw))")
        case let other: return other
        }
    }
}
