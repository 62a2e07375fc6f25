/// A mold in `baton status` (mold mode): the process that forks a release's workers.
public struct MoldStatus: Codable, Sendable, Equatable {
    /// Its pid.
    public var pid: Int32
    /// The release it loaded.
    public var release: String
    /// starting | ready | stopping.
    public var state: String
    /// When it started, seconds since the epoch.
    public var startedAt: Double
    /// Its own PSS (its workers are counted in theirs), when measured.
    public var pssBytes: UInt64?
    /// Molds restarted after dying, since baton started (all releases).
    public var restarts: Int

    enum CodingKeys: String, CodingKey {
        case pid, release, state, restarts
        case startedAt = "started_at"
        case pssBytes = "pss_bytes"
    }

    /// Creates a row.
    public init(pid: Int32, release: String, state: String, startedAt: Double, pssBytes: UInt64?, restarts: Int) {
        self.pid = pid
        self.release = release
        self.state = state
        self.startedAt = startedAt
        self.pssBytes = pssBytes
        self.restarts = restarts
    }

    /// `mold: pid 4711 ready on /srv/app/releases/42, up 3m2s, PSS 48.2M, 0 restarts`.
    public func line(now: Double) -> String {
        "mold: pid \(pid) \(state) on \(release), up \(StatusReport.age(now - startedAt)), PSS \(StatusReport.mib(pssBytes)), \(restarts) restarts"
    }
}
