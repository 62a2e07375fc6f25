import BatonCore
import BatonSystem
import Glibc

/// What one baton image hands the next across `execve` (in a memfd): the
/// descriptors that stay open and the supervisor state around them. Same
/// PID, so systemd's MainPID and the workers' parent do not change.
struct UpgradeState: Codable {
    struct ListenerState: Codable {
        var fd: Int32
        var name: String
        var address: String
    }

    struct SpecState: Codable, Equatable {
        var argv: [String]
        var directory: String
        var variables: [EnvVar]
        var uid: UInt32?
        var gid: UInt32?
        var groups: [UInt32]?
        /// `Credentials.account` (nil from an older image: its workers' user's passwd entry is
        /// read again).
        var account: [EnvVar]?
    }

    struct WorkerState: Codable {
        var slot: Int
        var generation: Int
        var pid: Int32
        var pidfd: Int32
        var notifyFD: Int32
        var notifyPath: String?
        var outputFD: Int32
        var spec: SpecState
        var startedAtNanos: Int64
        var startedAtWall: Double
        var readyAtNanos: Int64?
        var statusText: String?
        /// Its WATCHDOG_USEC interval (absent from an older image: no watchdog).
        var watchdogNanos: Int64?
        /// Its USS at ready and its USS samples (monotonic times), from which the memory rules
        /// measure its growth (absent from an older image: measured afresh, as a new worker's).
        var ussAtReady: UInt64?
        var memoryHistory: [MemoryPoint]?
        /// The folder it started in, symlinks resolved then (absent from an older image:
        /// retention knows it by its path only).
        var folder: String? = nil
        /// The start of a line it had not ended (a re-audit: lost across the upgrade; absent
        /// from an older image: none).
        var partialOutput: [UInt8]? = nil
    }

    struct SlotState: Codable {
        var index: Int
        var generation: Int
        var restarts: Int
        var lastRestartReason: String?
        var spec: SpecState
        var worker: WorkerState
    }

    /// Format version of this record.
    var version = 1
    var listeners: [ListenerState]
    var controlFD: Int32
    /// The metrics endpoint's listening socket (absent from an older image, which closed it:
    /// bound again).
    var metricsFD: Int32?
    var slots: [SlotState]
    var releaseState: ReleaseState
    var sentReady: Bool
    var degraded: Bool
    /// The `baton upgrade` client waiting for the result, if still connected.
    var clientFD: Int32?
    /// Whether baton made the notify directory (and so removes it at exit); nil from an
    /// image that did not say, which always removed it.
    var createdNotifyDirectory: Bool?
    /// Restarts by reason and deploys by outcome so far, so the metrics' counters carry on
    /// (absent from an older image).
    var restartsByReason: [String: Int]?
    var deploysByOutcome: [String: Int]?
    /// OOM kills counted (total, and by slot as strings), and log bytes dropped: counters that
    /// never decrease (absent from an older image).
    var oomTotal: Int?
    var oomBySlot: [String: Int]?
    var logDroppedBytes: UInt64?
    /// Settled worker footprints per release and the releases' order: without them the next
    /// deploy's auto strategy knew no footprint and replaced one slot at a time.
    var footprints: [String: [UInt64]]?
    var footprintOrder: [String]?
    /// The reservation held by `preflight --roll-ahead --hold` (monotonic times: the clock
    /// carries on across the execve).
    var reservation: ReservationState?
    /// The last recycle's start (monotonic): the next keeps `recycle_spacing` from it.
    var lastRecycleStartNanos: Int64?

    /// The output pipes (inodes) of spawns a mold failed, with until when (monotonic) each is
    /// looked for: a worker forked for one is killed by the next image too (absent from an
    /// older image: none).
    var abandonedSpawns: [AbandonedSpawn]?
    /// The unix listen sockets baton bound or took over (not systemd's), removed at the stop
    /// (a proxy audit: after an upgrade the socket file stayed; absent from an older image).
    var ownedUnixPaths: [String]? = nil
    /// The file (device, inode) at each unix listener's path when baton got the socket, and
    /// the lines said of those removed or replaced since (a re-audit: the next image recorded
    /// the file found at the path then, another baton's, and its stop unlinked that one;
    /// absent from an older image: recorded as found).
    var unixListenerFiles: [String: [UInt64]]? = nil
    var lostUnixListeners: [String: String]? = nil
    /// Output pipes of workers gone that their strays still write to, with the prefix their
    /// lines are logged under (a re-audit: not carried, the strays' next line raised SIGPIPE;
    /// absent from an older image: none).
    var strayOutputs: [StrayOutputState]? = nil

    struct StrayOutputState: Codable, Equatable {
        var fd: Int32
        var prefix: String
        var partialOutput: [UInt8]? = nil
    }

    struct AbandonedSpawn: Codable, Equatable {
        var pipe: UInt64
        var untilNanos: Int64
    }

    struct ReservationState: Codable {
        var bytes: UInt64
        var margin: UInt64
        var heldAtNanos: Int64
        var expiresAtNanos: Int64
        var rolls: Int
        /// What the tooling's use of it is measured from (nil from an older image: the new
        /// image's first sample; a re-audit saw a build under way counted as a shortage then).
        var baselineAvailable: Int64?
        var baselineWorkers: UInt64?
    }

    /// Every descriptor that must survive the execve.
    var descriptors: [Int32] {
        var fds = listeners.map(\.fd) + [controlFD]
        if let metricsFD { fds.append(metricsFD) }
        for s in slots {
            fds += [s.worker.pidfd, s.worker.outputFD]
            if s.worker.notifyFD >= 0 { fds.append(s.worker.notifyFD) }
        }
        if let clientFD { fds.append(clientFD) }
        fds += (strayOutputs ?? []).map(\.fd)
        return fds
    }
}

extension UpgradeState.SpecState {
    init(_ spec: WorkerSpec) {
        self.init(
            argv: spec.argv, directory: spec.directory, variables: spec.variables, uid: spec.credentials?.uid,
            gid: spec.credentials?.gid, groups: spec.credentials?.groups, account: spec.credentials?.account)
    }

    var spec: WorkerSpec {
        let credentials = uid.map { Credentials(uid: $0, gid: gid ?? 0, groups: groups ?? [], account: account ?? Accounts.account(uid: $0)) }
        return WorkerSpec(argv: argv, directory: directory, variables: variables, credentials: credentials)
    }
}

extension Duration {
    /// Whole nanoseconds (CLOCK_MONOTONIC values survive an execve).
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
