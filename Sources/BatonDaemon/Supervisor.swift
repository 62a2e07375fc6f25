import BatonCore
import BatonSystem
import Glibc
import Logging

/// The supervisor: N slots of workers accepting on shared sockets.
///
/// Invariants (what every change must keep):
/// - baton is never in the data path: workers accept on the sockets directly.
/// - A slot has at most one serving worker; during a rolling replacement it
///   may briefly have a new one starting and an old one draining; at most
///   `max_surge` extra workers run (surge) and at most `max_unavailable` slots
///   are without a serving worker (replace).
/// - A worker is a process tree in its own process group; signals go to the
///   group, and what is left of a group is killed when its leader exits.
/// - A drain always ends: `stop.timeout` after the stop signal comes SIGKILL.
/// - Triggers are never dropped: a reload during a reload is coalesced into
///   one more pass after the current one.
///
/// Everything here runs on the event-loop thread; nothing blocks it for long
/// (fork/exec and /proc reads are fast), so the watchdog keeps being fed.
public final class Supervisor {
    /// Where the supervisor is in its life: derived from `operations`.
    typealias Phase = OperationQueue<Int>.Phase

    /// How the daemon was started.
    public struct Options {
        /// The validated config.
        public var config: BatonConfig
        /// Re-reads and validates the config for a reload (nil: an embedded
        /// config, reloaded as it is). Runs off the event loop (it reads a
        /// file and waits for a parser child).
        public var reloadConfig: (@Sendable () throws -> BatonConfig)?
        /// Starts processes.
        public var launcher: any ProcessLauncher
        /// baton's own environment ("K=V"), the base of every worker's.
        public var environment: [String]
        /// This binary (re-executed by `baton upgrade` unless told another).
        public var executable: String
        /// The command line to re-execute with (`--resume=FD` is added).
        public var arguments: [String]
        /// The config file, passed to `baton upgrade --check`.
        public var configPath: String?
        /// Set in a re-executed image: the memfd holding the previous image's state.
        public var resumeFD: Int32?

        /// Creates options.
        public init(
            config: BatonConfig, reloadConfig: (@Sendable () throws -> BatonConfig)?, launcher: any ProcessLauncher, environment: [String],
            executable: String = "/proc/self/exe", arguments: [String] = [], configPath: String? = nil, resumeFD: Int32? = nil
        ) {
            self.config = config
            self.reloadConfig = reloadConfig
            self.launcher = launcher
            self.environment = environment
            self.executable = executable
            self.arguments = arguments
            self.configPath = configPath
            self.resumeFD = resumeFD
        }
    }

    let loop: EventLoop
    let logger: Logger
    /// Every effect on the system goes through here (`SupervisorHost`): real in baton, fake in tests.
    let host: any SupervisorHost
    /// sd_notify, through the host.
    var notifier: any ServiceNotifying { host.notifier }
    var options: Options
    var config: BatonConfig
    /// Which operation runs and which wait (the overlap rules); the source of `phase`.
    var operations = OperationQueue<Int>()
    /// The operations `operations` holds, by number.
    var operationTable: [Int: Operation] = [:]
    /// The number the next operation gets.
    var nextOperationNumber = 1
    /// Where the supervisor is in its life.
    var phase: Phase { operations.phase }
    var listeners: [Listener] = []
    var slots: [Slot] = []
    /// Directory of per-worker notify sockets (0700).
    var notifyDirectory: String = ""
    /// Listening sockets found shut down and logged (`deadListeners`), each once.
    var reportedDeadListeners: Set<String> = []
    /// `[rolling] max_requests` without any worker's count was said (``recycleByRequestCount()``).
    var saidNoRequestCounts = false
    /// A worker reported a count since baton started.
    var sawRequestCounts = false
    /// Looks in a row at each TCP listener's non-empty accept queue (``checkAcceptQueues()``).
    var acceptQueueLooks: [String: Int] = [:]
    /// Listeners whose accept queue stayed non-empty while workers were ready, with the line said.
    var unacceptedListeners: [String: String] = [:]
    /// Output pipes of workers gone whose escaped children still write to them.
    var strayOutputs: [StrayOutput] = []
    /// The file at each unix listener's path when baton got the socket (``recordUnixListenerFiles()``).
    var unixListenerFiles: [String: FileIdentity] = [:]
    /// Unix listeners whose file was removed or replaced, with the line said.
    var lostUnixListeners: [String: String] = [:]
    /// The listening sockets came from a socket unit (`[listen]` is not used then).
    var socketsFromUnit = false
    /// Sections the last reload's config changed that only a restart applies (status shows them).
    var restartNeeded: [String] = []
    /// The `[listen]` of the last reload's config (nil: none since start): under socket
    /// activation the config in force keeps the start's, which is not used.
    var reloadedListen: [ListenAddress]?
    /// Notify messages read from one socket per wakeup of the loop (64; tests set fewer, as
    /// a socket queues only `net.unix.max_dgram_qlen`, 10, before its senders block). The
    /// socket is level-triggered, so the loop calls back after the control socket, signals,
    /// timers and the other workers had their turn: reading until EAGAIN let a worker tree of
    /// 40 processes sending in a loop hold the loop for seconds (an audit: `baton status` took
    /// up to 3.9 s, a crash was seen 1.3 s late), as output once did (`outputBytesPerWakeup`).
    var notifyMessagesPerWakeup = 64
    /// Whether baton created `notifyDirectory` (only then is it chowned and removed at exit).
    var createdNotifyDirectory = false
    /// Whether the stop's last step ran (it runs once: start-up giving up reached it twice).
    var stopFinished = false
    /// What stops the runtime directory from being made again, said once (`restoreNotifyDirectory`).
    var runtimeTrouble: String?
    var runtimeDirectory: String = ""
    /// Slots waiting for their first start (start_concurrency).
    var startQueue: [Int] = []
    /// Whether READY=1 was sent.
    var sentReady = false
    /// The rollout in progress (of a deploy, reload or rollback), if any.
    var rollout: RollingRestart?
    /// Plans each step of the running rollout (nil: none runs, or its width is fixed).
    var rolloutPlanner: RolloutPlanner?
    /// The spec new workers of that rollout get.
    var rolloutSpec: WorkerSpec?
    /// The deploy or rollback whose commit (release.json) is being written now, off the loop:
    /// a stop waits for it, and its outcome is the write's.
    var committingOperation: Operation?
    /// The deploy, reload or rollback running now.
    var operation: Operation? { operations.running.flatMap { operationTable[$0.id] } }
    /// Operations waiting behind it, in order.
    var queue: [Operation] { operations.queued.compactMap { operationTable[$0.id] } }
    /// The state directory's release, history and retention bookkeeping (its only owner).
    let releases: ReleaseBook
    /// The current and previous release (the book's).
    var releaseState: ReleaseState { releases.state }
    /// Recent operations, oldest first (the book's).
    var history: [HistoryEntry] { releases.history }
    /// Set when a rollback failed.
    var degraded = false
    /// Problems of the state directory (the book's): ERROR lines in `baton status` until a
    /// release is persisted again.
    var stateProblems: [String] { releases.problems }
    /// The last lines of output of the last worker that failed to start.
    var lastFailureOutput: [String] = []
    /// `baton upgrade`: the check of the new binary and whether one is under way (its only owner).
    let upgrade: UpgradeCoordinator
    /// Whether an upgrade is under way (the coordinator's).
    var upgradeInProgress: Bool { upgrade.inProgress || upgrade.waiting != nil }
    /// The previous baton's record and orphaned workers (take-over after a crash).
    var takeOver = TakeOverState()
    /// Unix socket paths baton bound and did not hand to the FD store: removed at exit.
    var ownedUnixPaths: [String] = []
    /// Recycling by served requests (`[rolling] max_requests`).
    lazy var requestRecycler = Self.requestRecycler(config)
    /// Every recycle between deploys, under one budget (`Supervisor+Recycling.swift`).
    lazy var recycling = RecyclingEngine(concurrency: config.rolling.recycleConcurrency, spacing: config.rolling.recycleSpacing)
    /// The timer that asks the recycling engine again once the spacing passed.
    var recycleWake: EventLoop.Token?
    /// Set while the engine's starts are carried out (a start feeds events back).
    var recyclePumping = false
    /// New workers booting at once, from the CPU share of the last boots measured.
    var bootBudget = BootBudget(cpus: Supervisor.onlineCPUs)
    /// Whether the log said once that `boot_nice` is off for want of privilege.
    var bootNiceRefusalLogged = false
    /// When baton last sent WATCHDOG=1 (loop time), once the watchdog is on.
    var lastWatchdogPing: Duration?
    /// The memory monitor's state: restart policy, footprints, sampling cadence, OOM watch,
    /// reservation, merge notes (its only owner).
    let memoryMonitor: MemoryMonitor
    /// Restarts by reason since baton started (only ever incremented: Prometheus counters).
    var restartsByReason: [RestartReason: Int] = [:]
    /// Deploys by outcome since baton started (the book's; Prometheus counters).
    var deploysByOutcome: [OperationOutcome: Int] { releases.deploysByOutcome }
    /// The worker watchdog and liveness check (started in `setUp`).
    lazy var liveness = WorkerLiveness(settings: .init(stoppedTimeout: config.readiness.stoppedTimeout), now: loop.now())
    /// Molds and the starts waiting for them (mold mode).
    let moldBook = MoldBook()
    /// The Prometheus endpoint, when `[metrics] address` is set.
    var metrics: MetricsServer?
    var control: ControlServer?
    var signalFD: Int32 = -1
    /// Warnings of signals baton ignores, at most one per 10 s (`handleSignals`).
    var ignoredSignalWarnings = WarningThrottle()
    /// The last STATUS= sent, to avoid repeating it.
    var lastStatusLine = ""
    /// Processes that left a worker's process group and outlived it (``escapedChildren()``)
    /// already logged.
    var reportedEscapees: Set<pid_t> = []
    /// Worker groups SIGKILLed as their leader exited, and when: their members still alive
    /// within `Supervisor.dyingGroupGrace` are dying, not strays.
    var dyingGroups: [pid_t: Duration] = [:]
    /// Strays baton SIGKILLed (``killUnsupervised(_:)``), held by their pidfds until they are
    /// gone: no strays meanwhile, and waited for at the end of a stop.
    var killedStrays: [ChildProcess] = []
    /// Probes SIGKILLed with their exited worker and not gone yet, watched until they are.
    var dyingProbes: [ChildProcess] = []
    /// Exit code `run()` returns.
    var exitCode: Int32 = 0

    /// Creates the supervisor; `run()` starts it.
    public convenience init(options: Options, loop: EventLoop) {
        self.init(options: options, loop: loop, host: LinuxSupervisorHost(launcher: options.launcher))
    }

    /// Creates the supervisor acting through `host` (a fake in the tests of BatonDaemon), logging
    /// through `logHandler` (the tests' capture; default: the process's bootstrapped handler).
    init(options: Options, loop: EventLoop, host: any SupervisorHost, logHandler: (any LogHandler)? = nil) {
        self.options = options
        self.config = options.config
        self.host = host
        self.loop = loop
        var logger = logHandler.map { handler in Logger(label: "baton", factory: { _ in handler }) } ?? Logger(label: "baton")
        logger[metadataKey: "app"] = .string(options.config.app.name)
        self.logger = logger
        self.releases = ReleaseBook(
            directory: Self.stateDirectory(for: options.config), fallback: Release(directory: options.config.app.directory), logger: logger,
            app: options.config.app.name)
        self.upgrade = UpgradeCoordinator(loop: loop, host: host, logger: logger)
        self.memoryMonitor = MemoryMonitor(policy: RestartPolicy(settings: .init(config: options.config, hostname: Self.hostname())))
    }

    /// Opens sockets, starts workers and runs until stopped. Returns the
    /// process exit code. Must run on the thread that owns `loop`.
    /// A fatal error (the event loop failing; every start-up check runs before the first
    /// worker) leaves the workers running: outside systemd they keep
    /// serving, and the next `baton serve` takes them over, so `instance.json`
    /// is written first if a write was pending. (Under systemd the cgroup
    /// kill stops them.)
    public func run() throws -> Int32 {
        do {
            try setUp()
        } catch {
            if takeOver.recordPending { writeInstanceRecord() }
            removeRuntimeFilesIfNothingRuns()
            throw error
        }
        loop.run()
        if let failure = loop.failure {
            logger.critical("event loop failed: \(failure); exiting, workers left running for the next baton serve to take over")
            if takeOver.recordPending { writeInstanceRecord() }
            throw DaemonError("event loop failed: \(failure)")
        }
        return exitCode
    }

    private func setUp() throws {
        _ = CBatonLinuxShim.setChildSubreaper()
        runtimeDirectory = Self.runtimeDirectory(for: config)
        notifyDirectory = runtimeDirectory + "/notify"
        try prepareRuntimeDirectory()
        if options.resumeFD == nil { try checkPreviousInstance() }
        try lockRuntimeDirectory(refuse: options.resumeFD == nil)
        signalFD = try CBatonLinuxShim.signalFD(CBatonLinuxShim.supervisorSignals)
        try loop.register(fd: signalFD, events: .readable) { [unowned self] _ in self.handleSignals() }
        scheduleRuntimeCheck()
        try loadState()
        if let resumeFD = options.resumeFD {
            try resume(from: resumeFD)
            scheduleAcceptQueueCheck()
            recordInstance()
            if let interval = notifier.watchdogPingInterval { scheduleWatchdog(interval) }
            startMemoryChecks()
            startLivenessChecks()
            return
        }
        listeners = try openListeners()
        recordUnixListenerFiles()
        sayBacklogCap()
        logger.info("listening", metadata: ["on": .string(listeners.map(\.address).joined(separator: ","))])
        scheduleAcceptQueueCheck()
        sayCPUsWhenLimited()
        // Recorded before any worker exists: a baton killed from here on leaves its sockets'
        // inodes, by which the next one finds even workers it had no time to record.
        writeInstanceRecord()
        control = try openControlServer()
        // Before any worker: a metrics address in use fails the start with nothing left running
        // (a re-audit: serve exited 1 and its workers served on, orphaned).
        try startMetrics()
        let spec = try makeSpec(config, release: releaseState.current)
        if let user = config.app.user, !createdNotifyDirectory {
            logger.warning("\(notifyDirectory) existed: left with its owner and mode; workers running as \(user) must be able to reach it")
        }
        startSlots(spec: spec)
        startMemoryChecks()
        startLivenessChecks()
    }

    /// Makes the slots and starts their first workers, `start_concurrency` at a time.
    func startSlots(spec: WorkerSpec) {
        slots = (0..<config.app.workers).map { Slot(index: $0, spec: spec) }
        if let interval = notifier.watchdogPingInterval { scheduleWatchdog(interval) }
        notifier.notify("STATUS=starting \(config.app.workers) workers")
        startQueue = Array(0..<config.app.workers)
        planTakeOverPace()
        fillStartQueue()
        recordInstance()
    }

    /// The control socket, bound now (or adopted from the image before an upgrade), its
    /// groups looked up through the port.
    func openControlServer(adopting existing: Int32? = nil) throws -> ControlServer {
        do {
            return try ControlServer(adopting: existing, config: config, loop: loop, logger: logger, supervisor: self, lookUpGroup: host.groupID)
        } catch var error as DirectoryError {
            // Which key (a pid-1 audit: a user not root got `mkdir /run/baton: Permission denied`
            // for the default socket, no key named).
            error.key = controlSocketKey
            throw error
        } catch let error as SystemError {
            throw DaemonError("\(controlSocketKey): \(error)", exitCode: 2)
        }
    }

    /// `[control] socket` in messages, and its path when it is the default.
    private var controlSocketKey: String {
        config.control.socket == BatonConfig.defaultControlSocket(appName: config.app.name)
            ? "[control] socket (the default \(config.control.socket))" : "[control] socket"
    }

    /// The metrics endpoint, bound now or (`existing`) adopted from the image before an upgrade.
    func startMetrics(adopting existing: Int32? = nil) throws {
        guard let text = config.metrics.address else { return }
        guard let address = ListenAddress.parse(text) else { throw DaemonError("metrics.address: cannot parse \(text)") }
        let server: MetricsServer
        do {
            server = try MetricsServer(address: address, adopting: existing, loop: loop, source: self) { [logger] in
                logger.error("metrics: \($0)")
            }
        } catch {
            // Named (a multi-app audit: `bind 127.0.0.1:18511: Address already in use` read as a
            // listen address's).
            throw DaemonError("[metrics] address: \(error)")
        }
        metrics = server
        logger.info("metrics on \(server.address)/metrics")
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The runtime directory: `[app] runtime_directory`, else systemd's
    /// $RUNTIME_DIRECTORY, else /run/baton/NAME.
    public static func runtimeDirectory(for config: BatonConfig) -> String {
        if let dir = config.app.runtimeDirectory { return dir }
        if let env = getenv("RUNTIME_DIRECTORY") {
            // systemd may list several, separated by ':'.
            let first = String(cString: env).split(separator: ":").first.map(String.init)
            if let first, !first.isEmpty { return first }
        }
        return "/run/baton/\(config.app.name)"
    }

    /// The spec for new workers from a config and a release (resolves the
    /// environment file and user now, so a broken one fails before any change).
    func makeSpec(_ config: BatonConfig, release: Release) throws -> WorkerSpec {
        var variables: [EnvVar] = []
        if let path = config.app.environmentFile {
            let text: String
            do {
                text = try host.files.read(path)
            } catch {
                throw DaemonError("app.environment_file: \(error)")
            }
            variables = try EnvironmentFile.parse(text, path: path).map { EnvVar(name: $0.0, value: $0.1) }
        }
        variables += config.app.environment
        variables += release.environment
        let credentials = try host.credentials(user: config.app.user, group: config.app.group)
        return WorkerSpec(
            argv: release.command ?? config.app.command, directory: release.directory, variables: variables, credentials: credentials)
    }
}

/// A daemon-level failure with a one-line message.
public struct DaemonError: Error, CustomStringConvertible {
    /// The message.
    public var description: String
    /// The exit code of `baton serve` when start-up fails with it: 1, or 2 when the config
    /// cannot work on this host as it is.
    public var exitCode: Int32
    /// Creates an error.
    public init(_ message: String, exitCode: Int32 = 1) {
        description = message
        self.exitCode = exitCode
    }
}
