/// A control-socket verb: `cmd` on the wire (its raw value), decoded once where the request
/// comes in (``ControlRequest/command``).
public enum ControlCommand: String, Sendable, Hashable, CaseIterable {
    case status, ping, history, attach, releases
    case reload, deploy, rollback, upgrade, preflight
    case pruneReleases = "prune-releases"

    /// It changes state: the caller's uid is logged, and only the control group may ask.
    public var isMutating: Bool {
        switch self {
        case .reload, .deploy, .rollback, .upgrade, .preflight, .pruneReleases: true
        case .status, .ping, .history, .attach, .releases: false
        }
    }

    /// Its client follows an operation until it ends (a queue's wait included), not one answer.
    public var follows: Bool {
        switch self {
        case .reload, .deploy, .rollback, .upgrade, .preflight, .attach: true
        case .status, .ping, .history, .releases, .pruneReleases: false
        }
    }
}
