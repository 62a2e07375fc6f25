import BatonCore
import BatonSystem
import Glibc

/// What a new worker runs: the release's directory, argv and environment.
/// Old workers keep the spec they were started with.
struct WorkerSpec: Sendable, Equatable {
    /// argv.
    var argv: [String]
    /// The release folder (working directory).
    var directory: String
    /// Environment entries from the environment file and `[app.environment]`.
    var variables: [EnvVar]
    /// Credentials to drop to, if `[app] user` is set.
    var credentials: Credentials?
    /// The release name shown in status (the directory).
    var release: String { directory }
    /// The release folder as the kernel tells folders apart (``PathKey``): what a release's mold,
    /// its backoff and its refork are kept by.
    var releaseKey: PathKey { PathKey(directory) }

    /// Byte for byte: Swift's String equality takes `café` in NFC and in NFD for one, and a
    /// deploy of one twin in mold mode was forked from the other's mold (a re-audit: the old
    /// code kept serving, "deploy finished").
    static func == (a: WorkerSpec, b: WorkerSpec) -> Bool {
        func bytes(_ strings: [String]) -> [[UInt8]] { strings.map { Array($0.utf8) } }
        return bytes(a.argv) == bytes(b.argv) && Array(a.directory.utf8) == Array(b.directory.utf8)
            && bytes(a.variables.map { $0.name + "=" + $0.value }) == bytes(b.variables.map { $0.name + "=" + $0.value })
            && a.credentials == b.credentials
    }
}

/// One worker process tree; its descriptors, output and timers are ``ChildChannels``'. Lives on
/// the event-loop thread only.
final class Worker: ChildChannels {
    /// starting → ready → draining → exited.
    enum State: String {
        case starting, ready, draining, exited
    }

    /// Slot 0..N-1.
    let slot: Int
    /// Increments with each start in the slot.
    let generation: Int
    /// What it runs.
    let spec: WorkerSpec
    /// Monotonic start time.
    let startedAt: Duration
    /// Wall-clock start time (seconds since the epoch), for status.
    let startedAtWall: Double
    /// Current state.
    var state: State = .starting
    /// The operation whose rollout started it (a replacement), if one did.
    var startedByOperation: Int?
    /// It runs the release of a deploy or rollback that failed: what escaped from it goes with
    /// it, also when it exits after that operation ended (``killEscapees(of:failedStart:outputInode:)``).
    var ranFailedRelease = false
    /// Monotonic time it became ready (when baton learnt it).
    var readyAt: Duration?
    /// How long it took to become ready: until it sent its READY=1 (the datagram's kernel time),
    /// not until baton read it; nil for a worker adopted from an earlier baton.
    var measuredBoot: Duration?
    /// How long ago the READY=1 being handled was sent (set only while it is handled).
    var readyReadLate: Duration?
    /// Its boot time: `measuredBoot`, or for an adopted worker from its start to `readyAt`.
    var bootTime: Duration? { measuredBoot ?? readyAt.map { $0 - startedAt } }
    /// How much nicer than baton it boots (`[readiness] boot_nice`; 0 once given back: at ready,
    /// or at half the readiness timeout).
    var bootNice: Int32 = 0
    /// Its way to ready (BatonCore decides; nil for a worker adopted ready from an earlier baton).
    var readiness: ReadinessGate?
    /// A running exec-mode readiness (or liveness) probe, which owns its pidfd.
    var probe: ChildProcess?
    /// The last STATUS= it sent.
    var statusText: String?
    /// Requests served (`X_BATON_REQUESTS=`): the sum of the last count each process of its
    /// tree sent (``requestCounts``), and of those folded into ``retiredRequests``.
    var requestsServed: Int?
    /// The last `X_BATON_REQUESTS=` count of each process of its tree that sent one (gunicorn's
    /// workers under its master each count their own).
    var requestCounts: [pid_t: Int] = [:]
    /// The last counts of processes gone, summed (``requestCounts`` stays small).
    var retiredRequests = 0
    /// Why it is being stopped (for the slot's restart reason), if baton stops it.
    var stopReason: StopReason?
    /// What baton said when it stopped it, for a failed start's reason (a readiness timeout).
    var stopText: String?
    /// Ready, and baton is not stopping it: what the liveness checks judge and what a
    /// stability window can count as stable.
    var isReadyAndNotStopping: Bool { state == .ready && stopReason == nil }
    /// Its memory readings (written by the memory monitor and the footprint sampling).
    var memoryReadings = WorkerMemory()
    /// Latest memory of its tree (PSS/USS from the last detailed sample).
    var memory: MemorySample? { memoryReadings.sample }
    /// USS when it became ready (growth since boot = now − this).
    var ussAtReady: UInt64? { memoryReadings.ussAtReady }
    /// USS samples for the leak rate.
    var history: MemoryHistory { memoryReadings.history }
    /// Monotonic time the drain began.
    var drainStartedAt: Duration?
    /// Its drain outlasted `stop.timeout` and ended with SIGKILL (requests in flight were cut).
    var drainCutShort = false
    /// Draining, its own process exited while others of its group still ran: baton waits for
    /// them (``Supervisor/awaitsItsGroup(_:)``).
    var awaitingGroup = false
    /// The next look at that group, while one is scheduled.
    var groupPoll: EventLoop.Token?
    /// What was left of that group when the stop timeout SIGKILLed it ("pid 7 sleep, …").
    var groupLeftAtKill: String?
    /// The processes of that group baton holds by their pidfds meanwhile, and how those that
    /// did not end as a drain does ended ("pid 7 exited with code 1").
    var groupHeld: [ChildProcess] = []
    var groupFailures: [String] = []
    /// The folder it was started in, its symlinks resolved then (retention keeps it).
    var folder: String?
    /// Monotonic time of the last WATCHDOG=1.
    var lastWatchdog: Duration?
    /// The interval it was given in WATCHDOG_USEC (`readiness.watchdog` when it started).
    var watchdogInterval: Duration?
    /// Its liveness probe's runs since it became ready (nil until the first is scheduled).
    var livenessProbe: LivenessProbeRecord?
    /// The running probe was killed at `probe_timeout`: the seconds its tree had waited for a
    /// CPU by then (0 when unknown; nil: not killed for its timeout).
    var probeTimeoutWait: Double?
    /// The liveness probe's grace for the only worker serving was given (its failures counted
    /// once more before it is replaced).
    var livenessGraceGiven = false
    /// A rollout's "stable for" line for a new worker that passed its stability window while
    /// it waited to be promoted (the canary had not passed yet): reported after its promotion.
    var heldStableLine: String?
    /// Warnings about its notify messages: at most one per 10 s (`warnNotify`).
    var notifyWarnings = WarningThrottle()
    /// Notify fields baton does not act on that it said once it got (`MAINPID`, `FDSTORE`, …).
    var unsupportedNotifySeen: Set<String> = []
    /// Its start time in clock ticks since boot (/proc), read as it was spawned: the processes
    /// that escaped from it started after it (nil when unknown).
    var startTicks: UInt64?
    /// How it exited, once it did.
    var exit: CBatonLinuxShim.Exit?
    /// `recentOutput.appended` when it became ready: the lines it printed since are its own
    /// failure's, the ones before its boot's.
    var outputAtReady: Int?
    /// Until when `EXTEND_TIMEOUT_USEC=` extended its readiness timeout.
    var readinessExtendedUntil: Duration?

    init(slot: Int, generation: Int, process: ChildProcess, spec: WorkerSpec, startedAt: Duration, startedAtWall: Double = wallClockNow()) {
        self.slot = slot
        self.generation = generation
        self.spec = spec
        self.startedAt = startedAt
        self.startedAtWall = startedAtWall
        super.init(process: process)
    }
}

/// Why baton stops a worker.
enum StopReason: Equatable {
    /// It is replaced: its slot restarts for this reason.
    case restart(RestartReason)
    /// A rollout gave up its new worker.
    case abandoned
    /// baton is shutting down.
    case shutdown

    /// The restart reason, if the stop restarts the slot.
    var restartReason: RestartReason? {
        if case .restart(let reason) = self { reason } else { nil }
    }
}

/// One position 0..N-1: at most one serving worker, plus during a rolling
/// replacement a new one starting, and old ones draining.
final class Slot {
    /// Position.
    let index: Int
    /// The serving (or initially starting) worker.
    var current: Worker?
    /// A new worker starting during a rolling replacement (surge).
    var replacement: Worker?
    /// Old workers draining.
    var draining: [Worker] = []
    /// Spec for the next start of this slot.
    var spec: WorkerSpec
    /// Its generations, restarts, backoff, respawn and stability window (BatonCore decides).
    var life: SlotLifecycle
    /// The timers that carry out `life`'s respawn and stability window.
    var respawnTimer: EventLoop.Token?
    var stableTimer: EventLoop.Token?

    init(index: Int, spec: WorkerSpec, life: SlotLifecycle? = nil) {
        self.index = index
        self.spec = spec
        self.life = life ?? SlotLifecycle(index: index)
    }

    /// Generation of the latest start.
    var generation: Int { life.generation }
    /// Restarts counted.
    var restarts: Int { life.restarts }
    /// Why it last restarted.
    var lastRestartReason: RestartCause? { life.lastRestartReason }
    /// Crash backoff.
    var backoff: CrashBackoff { life.backoff }
    /// Shown as crash-looping (status, `STATUS=`): failures in a row over the threshold and no
    /// ready worker serving. A worker that came back ready clears the label at once, as a
    /// restarted pod is `Running` again; the count itself stays until it has been up
    /// `stableAfter`, so a crash soon after goes on with the backoff where it was.
    var isCrashLooping: Bool { backoff.isCrashLooping && current?.state != .ready }
    /// When the pending respawn is due.
    var respawnAt: Duration? { life.respawn?.at }

    /// Every live worker of the slot.
    var workers: [Worker] { [current, replacement].compactMap { $0 } + draining }
}

/// A fixed-size buffer of the most recent items.
struct RingBuffer<Element> {
    private var items: [Element] = []
    private var head = 0
    let capacity: Int
    /// Items appended since it was made (evicted ones included).
    private(set) var appended = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ item: Element) {
        appended += 1
        if items.count < capacity {
            items.append(item)
        } else {
            items[head] = item
            head = (head + 1) % capacity
        }
    }

    /// Oldest first.
    var elements: [Element] { Array(items[head...] + items[..<head]) }
}
