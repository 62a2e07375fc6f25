/// How an operation ended, as `baton history` and `baton_deploys_total{outcome}` name it.
public enum OperationOutcome: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// Every worker serves the target.
    case succeeded
    /// New workers failed and the replaced slots went back to the previous release.
    case rolledBack = "rolled-back"
    /// It failed before any slot changed (or a roll-ahead, reload or policy restart failed).
    case failed
    /// The rollback failed too: slots run different releases.
    case degraded
    /// The client's `--timeout` (or `[deploy] timeout`) passed.
    case timedOut = "timed-out"
    /// Refused before it began (in history, the newest tenth of its lines at most).
    case refused
    /// baton stopped or exited before it finished: the release was not committed.
    case interrupted
    /// Begun and not finished yet (the state directory's unfinished-deploy record).
    case inProgress = "in-progress"

    /// The outcomes a finished deploy's history entry can have: `baton_deploys_total` exports
    /// each from 0.
    public static let finished: [OperationOutcome] = allCases.filter { $0 != .inProgress }

    /// Its name (the raw value), so interpolating it writes what the wire carries.
    public var description: String { rawValue }

    /// In a sentence (`deploy of DIR rolled back: …`): the name with spaces for hyphens.
    public var words: String { String(rawValue.map { $0 == "-" ? " " : $0 }) }
}
