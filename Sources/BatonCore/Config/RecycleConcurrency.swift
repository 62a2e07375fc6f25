/// `[rolling] recycle_concurrency`: how many recycles (every reason between deploys) may
/// run at once. A config value of its own (not inside RecyclingEngine) so that the config
/// types stand without the engine (the fuzzers compile the config alone).
public enum RecycleConcurrency: Sendable, Equatable, Codable {
    /// The rollout planner's surge width now (memory headroom, CPUs), at least 1.
    case auto
    /// At most this many at once (at least 1).
    case fixed(Int)
}
