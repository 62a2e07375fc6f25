/// What a deploy changes: the release folder, and optionally argv and extra
/// environment. Old workers keep the release they started with.
public struct Release: Codable, Sendable, Equatable {
    /// The release folder (working directory of its workers).
    public var directory: String
    /// argv; nil means `[app] command`.
    public var command: [String]?
    /// Environment added on top of the environment file and `[app.environment]`.
    public var environment: [EnvVar]

    /// Creates a release.
    public init(directory: String, command: [String]? = nil, environment: [EnvVar] = []) {
        self.directory = directory
        self.command = command
        self.environment = environment
    }
}

extension EnvVar: Codable {
    enum CodingKeys: String, CodingKey { case name, value }

    /// Decodes {"name": ..., "value": ...}.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name), value: try c.decode(String.self, forKey: .value))
    }

    /// Encodes {"name": ..., "value": ...}.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(value, forKey: .value)
    }
}

/// The persisted release bookkeeping of one app (state directory,
/// `release.json`): a restarted baton comes back on the last good release.
public struct ReleaseState: Codable, Sendable, Equatable {
    /// The release serving now (the last deploy that succeeded).
    public var current: Release
    /// The one before it (`baton rollback` goes there).
    public var previous: Release?
    /// When the deploy or rollback that committed this state started (wall clock, as its
    /// history line's `startedAt`): a baton killed after the commit tells it from one killed
    /// before, a redeploy of the release already current included. Nil in older files.
    public var committedBy: Double?
    /// The `[app] name` of the baton that wrote it: another app's baton refuses the directory
    /// (a day-2 audit: an app started on a state directory another app had used ran that app's
    /// release and command). Nil in older files.
    public var app: String?

    /// Creates a state.
    public init(current: Release, previous: Release?, committedBy: Double? = nil, app: String? = nil) {
        self.current = current
        self.previous = previous
        self.committedBy = committedBy
        self.app = app
    }
}

/// One line of `baton history`.
public struct HistoryEntry: Codable, Sendable, Equatable {
    /// The last `limit` of `entries` (oldest first), but never without the newest deploy or
    /// rollback that ran (not refused) when `entries` has one: `baton deploy --attach` answers
    /// with its outcome. It takes the place of the oldest kept line (a policy audit: 200
    /// policy restarts pushed a failed deploy out, and `--attach` said `no deploy yet`, exit 0).
    /// Refused requests take at most a tenth of it, the newest (a CI audit: 210 requests
    /// refused during one deploy left 199 `refused` lines and pushed out all 125 earlier ones).
    public static func kept(_ entries: [HistoryEntry], limit: Int) -> [HistoryEntry] {
        var entries = entries
        var extraRefusals = entries.count(where: { $0.outcome == .refused }) - max(1, limit / 10)
        if extraRefusals > 0 {
            entries.removeAll { entry in
                guard extraRefusals > 0, entry.outcome == .refused else { return false }
                extraRefusals -= 1
                return true
            }
        }
        let kept = Array(entries.suffix(max(1, limit)))
        func ran(_ e: HistoryEntry) -> Bool { e.kind.isDeploy && e.outcome != .refused }
        guard entries.count > kept.count, !kept.contains(where: ran), let last = entries.last(where: ran) else { return kept }
        return [last] + kept.dropFirst()
    }

    /// What ran (encoded as its name: `deploy`, `rollback`, `reload`, `policy`, `roll-ahead`).
    public var kind: OperationKind
    /// The release it went to.
    public var release: String
    /// The release before.
    public var previousRelease: String?
    /// How it ended (encoded as its name: `succeeded`, `rolled-back` …).
    public var outcome: OperationOutcome
    /// One-line detail (the failure reason).
    public var detail: String?
    /// Start, seconds since the epoch.
    public var startedAt: Double
    /// How long it took, seconds.
    public var duration: Double
    /// Who asked (peer uid; nil for a signal).
    public var uid: UInt32?
    /// A deploy or rollback that succeeded: the folder its workers started in, when `release`
    /// names another now or spells it otherwise (a link: Capistrano's `current`); retention ranks
    /// folders by it (a releases audit: a folder deployed through a link had no rank, and was
    /// pruned before older ones). Nil otherwise, and in lines of older batons.
    public var folder: String?

    enum CodingKeys: String, CodingKey {
        case kind, release, outcome, detail, duration, uid, folder
        case previousRelease = "previous_release"
        case startedAt = "started_at"
    }

    /// Creates an entry.
    public init(
        kind: OperationKind, release: String, previousRelease: String?, outcome: OperationOutcome, detail: String?, startedAt: Double,
        duration: Double, uid: UInt32?, folder: String? = nil
    ) {
        self.folder = folder
        self.kind = kind
        self.release = release
        self.previousRelease = previousRelease
        self.outcome = outcome
        self.detail = detail
        self.startedAt = startedAt
        self.duration = duration
        self.uid = uid
    }
}
