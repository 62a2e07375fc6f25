/// baton's descriptor table, as a bound on how many more workers it can start now.
///
/// baton holds about three descriptors per worker (its pidfd, the read end of its output pipe
/// and its notify socket). Starting one takes more for a moment: the new worker's pipe and
/// notify socket and the spawn's error pipe in baton, then, in the child's copy of baton's
/// table, a copy of the error pipe, of every listening socket, of the held descriptor and of
/// the three standard streams, placed above their targets before they are moved into place.
/// A limits audit: with `LimitNOFILE=48`, 6 workers and 32 descriptors open, an auto surge of
/// 6 failed at its third spawn ("placing descriptors: Too many open files"), as did
/// `--max-surge 3` (4 of 4), while `--max-surge 2` succeeded.
public struct DescriptorRoom: Sendable, Equatable {
    /// Descriptors open now.
    public var open: Int
    /// `RLIMIT_NOFILE` (the soft limit).
    public var limit: Int
    /// Listening sockets every worker gets.
    public var listeners: Int
    /// New workers planned and not started yet (a replace slot whose old worker just drained):
    /// their descriptors are not open yet.
    public var unstarted: Int

    /// Held per worker.
    public static let perWorker = 3
    /// Needed beside them, besides one per listening socket, while one worker starts.
    public static let perStart = 10

    /// Creates the figures.
    public init(open: Int, limit: Int, listeners: Int, unstarted: Int = 0) {
        self.open = open
        self.limit = limit
        self.listeners = listeners
        self.unstarted = unstarted
    }

    /// More new workers that can start one after another now, each keeping its descriptors
    /// (the last start needs its own room on top of the ones before it), beside the unstarted.
    public var workers: Int {
        let spare = limit - open - startNeed
        return spare < 0 ? 0 : max(0, spare / Self.perWorker + 1 - unstarted)
    }

    /// Free descriptors one start needs.
    public var startNeed: Int { Self.perStart + listeners }

    /// Whether one worker can start once a drained one gave its descriptors back (a replace
    /// step); when not, no worker can start at all.
    public var canReplace: Bool { limit - open + Self.perWorker >= startNeed }

    /// "32 of 48 descriptors open".
    public var summary: String { "\(open) of \(limit) descriptors open" }
}
