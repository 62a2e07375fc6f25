import TOMLKit

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
