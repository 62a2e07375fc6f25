/// One app's baton configuration: what to run, how many, and the policies around it.
///
/// Read from TOML with ``parse(_:path:)``; every value has been validated by then, so the rest
/// of baton never re-checks ranges. Each section's initializer defaults match the config file's
/// defaults.
public struct BatonConfig: Sendable, Equatable, Codable {
    /// `[app]`: the workers' command, directory, count and environment.
    public var app: AppConfig
    /// `[listen]`: the addresses to bind when not socket-activated.
    public var listen: ListenConfig
    /// `[readiness]`: when a new worker counts as ready.
    public var readiness: ReadinessConfig
    /// `[stop]`: how a worker is asked to stop and how long it may drain.
    public var stop: StopConfig
    /// `[deploy]`: how workers are replaced.
    public var deploy: DeployConfig
    /// `[memory]`: the memory budget and the restart-on-threshold policy.
    public var memory: MemoryConfig
    /// `[rolling]`: restarts by age between deploys.
    public var rolling: RollingConfig
    /// `[control]`: the control socket and who may use it.
    public var control: ControlConfig
    /// `[metrics]`: the Prometheus endpoint.
    public var metrics: MetricsConfig
    /// `[mold]`: the mold process of `[app] mode = "mold"`.
    public var mold = MoldConfig()
    /// Where the config came from (for messages); "" for an embedded config.
    public var sourcePath: String

    /// Creates a config from its sections.
    public init(
        app: AppConfig, listen: ListenConfig, readiness: ReadinessConfig, stop: StopConfig,
        deploy: DeployConfig, memory: MemoryConfig, rolling: RollingConfig, control: ControlConfig,
        metrics: MetricsConfig, sourcePath: String
    ) {
        self.app = app
        self.listen = listen
        self.readiness = readiness
        self.stop = stop
        self.deploy = deploy
        self.memory = memory
        self.rolling = rolling
        self.control = control
        self.metrics = metrics
        self.sourcePath = sourcePath
    }

    /// The state directory when neither `[app] state_directory` nor systemd's `$STATE_DIRECTORY`
    /// sets it: `/var/lib/baton/NAME`.
    public static func defaultStateDirectory(appName: String) -> String { "/var/lib/baton/\(appName)" }

    /// The control socket path when `[control] socket` is not set: `/run/baton/NAME/control.sock`.
    /// Clients given `--app NAME` look there.
    public static func defaultControlSocket(appName: String) -> String {
        "/run/baton/\(appName)/control.sock"
    }

    /// What ``isValidAppName(_:)`` accepts, for messages.
    public static let appNameRule = "must be 1 to 64 characters of A-Z a-z 0-9 _ . -, and not . or .."

    /// Whether `name` may name an app: it becomes a path component (`/run/baton/NAME`), so
    /// `[A-Za-z0-9_.-]{1,64}` and neither `.` nor `..`.
    public static func isValidAppName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name != "." && name != ".."
            && name.utf8.allSatisfy { KeyPath.isBareKeyByte($0) || $0 == UInt8(ascii: ".") }
    }

    /// A config for `app` with every other section at its defaults (no embedded source path).
    public static func make(app: AppConfig) -> BatonConfig {
        BatonConfig(
            app: app, listen: ListenConfig(), readiness: ReadinessConfig(), stop: StopConfig(),
            deploy: DeployConfig(), memory: MemoryConfig(), rolling: RollingConfig(),
            control: ControlConfig(socket: defaultControlSocket(appName: app.name)),
            metrics: MetricsConfig(), sourcePath: "")
    }
}

/// `[app]`: what a worker runs and how many of them.
public struct AppConfig: Sendable, Equatable, Codable {
    /// The app's name, `[A-Za-z0-9_.-]{1,64}`; names the control socket and runtime directories.
    public var name: String
    /// The worker's argv (never a shell string); `command[0]` is looked up in `PATH`.
    public var command: [String]
    /// The first release's working directory (absolute); after a deploy the persisted release wins.
    public var directory: String
    /// How many worker slots, 1...1024.
    public var workers: Int
    /// The user workers run as; nil = baton's own.
    public var user: String?
    /// The group workers run as; nil = the user's primary group (or baton's own).
    public var group: String?
    /// `environment_file`: an absolute path to a systemd-style `KEY=VALUE` file read at spawn.
    public var environmentFile: String?
    /// `start_concurrency`: workers booted at once at start-up, at least 1 (may exceed `workers`).
    public var startConcurrency: Int
    /// `[app.environment]`, in file order; applied after `environment_file`.
    public var environment: [EnvVar]
    /// `runtime_directory` (absolute); nil = decided at runtime (`RUNTIME_DIRECTORY` or `/run/baton/NAME`).
    public var runtimeDirectory: String?
    /// `state_directory` (absolute); nil = decided at runtime (`STATE_DIRECTORY` or `/var/lib/baton/NAME`).
    public var stateDirectory: String?
    /// `start_attempts`: failed starts in a row of one slot before baton, never ready yet,
    /// gives up and exits 1 (so that systemd's `Restart=` and alerts act); 0 = never gives up.
    public var startAttempts: Int = 5
    /// `mode`: `exec` (baton execs every worker) or `mold` (a mold per release forks them).
    public var mode: AppMode = .exec

    /// Creates an app section; everything after `workers` has the config file's default.
    public init(
        name: String, command: [String], directory: String, workers: Int, user: String? = nil,
        group: String? = nil, environmentFile: String? = nil, startConcurrency: Int = 2,
        environment: [EnvVar] = [], runtimeDirectory: String? = nil, stateDirectory: String? = nil
    ) {
        self.name = name
        self.command = command
        self.directory = directory
        self.workers = workers
        self.user = user
        self.group = group
        self.environmentFile = environmentFile
        self.startConcurrency = startConcurrency
        self.environment = environment
        self.runtimeDirectory = runtimeDirectory
        self.stateDirectory = stateDirectory
    }
}

/// One `NAME = "value"` of `[app.environment]`.
public struct EnvVar: Sendable, Equatable {
    /// The variable's name.
    public var name: String
    /// The variable's value.
    public var value: String

    /// Creates a variable.
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    /// Byte for byte: Swift's String equality takes `café` in NFC and in NFD for one, and a
    /// worker reads two values (a names audit: a release whose only change was the value's
    /// normalization was taken for a redeploy of the current one).
    public static func == (a: EnvVar, b: EnvVar) -> Bool { a.name.utf8.elementsEqual(b.name.utf8) && a.value.utf8.elementsEqual(b.value.utf8) }
}

/// `[listen]`: the sockets baton binds itself when systemd does not pass any.
public struct ListenConfig: Sendable, Equatable, Codable {
    /// `addresses`; may be empty here: whether that is an error depends on socket activation,
    /// which only the runtime knows.
    public var addresses: [ListenAddress]
    /// `socket_mode` (written as octal digits, `"0660"`): the file mode of unix sockets.
    public var socketMode: UInt32
    /// `backlog`: the `listen(2)` backlog, 1...65535.
    public var backlog: Int32
    /// `socket_group`: the group of unix sockets (a name or a gid; systemd's `SocketGroup=`);
    /// nil: baton's own (a proxy audit: nginx as www-data could not reach a 0660 socket).
    public var socketGroup: String?

    /// Creates a listen section with the config file's defaults.
    public init(addresses: [ListenAddress] = [], socketMode: UInt32 = 0o660, backlog: Int32 = 1024, socketGroup: String? = nil) {
        self.addresses = addresses
        self.socketMode = socketMode
        self.backlog = backlog
        self.socketGroup = socketGroup
    }
}

/// How baton decides a new worker is ready to serve.
public enum ReadinessMode: String, Sendable, Equatable, Codable {
    /// The worker sends `READY=1` to its own `NOTIFY_SOCKET`.
    case notify
    /// The worker is ready once it has stayed alive for `readiness.delay`.
    case delay
    /// The worker is ready once `readiness.probe` exits 0.
    case exec
}

/// `[readiness]`: the gate every new worker passes before an old one is drained.
public struct ReadinessConfig: Sendable, Equatable, Codable {
    /// `mode`: notify, delay or exec.
    public var mode: ReadinessMode
    /// `timeout`: a worker not ready by then has failed to start (> 0).
    public var timeout: Duration
    /// `delay`: for `mode = "delay"`, how long a worker must stay alive.
    public var delay: Duration
    /// `probe`: for `mode = "exec"`, the argv run (with `BATON_WORKER_PID`) until it exits 0.
    public var probe: [String]
    /// `probe_interval`: the pause between probe runs (> 0).
    public var probeInterval: Duration
    /// `probe_timeout`: a probe run taking longer counts as a failure (> 0).
    public var probeTimeout: Duration
    /// `watchdog`: a ready worker must send `WATCHDOG=1` at least this often; nil = no watchdog.
    public var watchdog: Duration?
    /// `stopped_timeout`: a ready worker whose tree has a process stopped (SIGSTOP, a tracer)
    /// for longer is replaced; `"0s"` (nil here) turns the check off.
    public var stoppedTimeout: Duration?
    /// `liveness_probe`: argv run (with `BATON_WORKER_PID`) against each ready worker every
    /// `liveness_interval`; empty = no liveness probe.
    public var livenessProbe: [String] = []
    /// `liveness_interval`: the pause between liveness probe runs of one worker (> 0).
    public var livenessInterval: Duration = .seconds(10)
    /// `liveness_failures`: failed runs in a row (non-zero exit, or longer than
    /// `probe_timeout`) after which the worker is replaced.
    public var livenessFailures = 3
    /// `boot_nice`: a new worker starts this much nicer (lower CPU priority, 0...19, 0 = off)
    /// than baton, and every thread of its tree gets baton's priority back once it is ready,
    /// so booting workers do not take CPU from the workers that serve.
    public var bootNice = ReadinessConfig.defaultBootNice
    /// `boot_nice` when the config does not set it: 0 (off). In interleaved A/B runs on an
    /// otherwise idle 2-core machine (Benchmarks/README.md, *boot_nice*), 10 left the restart
    /// window's p99 where it was (baton+gunicorn, baton+puma, baton+puma(mold), both apps) and
    /// made every rollout 11-66 % longer: the yielding boots wait behind the serving workers.
    public static let defaultBootNice = 0

    /// Creates a readiness section with the config file's defaults.
    public init(
        mode: ReadinessMode = .notify, timeout: Duration = .seconds(60), delay: Duration = .seconds(2),
        probe: [String] = [], probeInterval: Duration = .milliseconds(500),
        probeTimeout: Duration = .seconds(2), watchdog: Duration? = nil, stoppedTimeout: Duration? = .seconds(10)
    ) {
        self.mode = mode
        self.timeout = timeout
        self.delay = delay
        self.probe = probe
        self.probeInterval = probeInterval
        self.probeTimeout = probeTimeout
        self.watchdog = watchdog
        self.stoppedTimeout = stoppedTimeout
    }
}

/// `[stop]`: how a worker is stopped.
public struct StopConfig: Sendable, Equatable, Codable {
    /// `signal`'s number (Linux numbering) sent to the worker's process group.
    public var signal: Int32
    /// The signal's canonical name, `"SIGTERM"`.
    public var signalName: String
    /// `timeout`: the drain time before SIGKILL; bounds every drain.
    public var timeout: Duration

    /// Creates a stop section with the config file's defaults (SIGTERM, 30 s).
    public init(signal: Int32 = 15, signalName: String = "SIGTERM", timeout: Duration = .seconds(30)) {
        self.signal = signal
        self.signalName = signalName
        self.timeout = timeout
    }
}

/// `[rolling]`: periodic restarts by age.
public struct RollingConfig: Sendable, Equatable, Codable {
    /// `max_age`: workers older than this are restarted one at a time; nil = off.
    public var maxAge: Duration?
    /// `splay`: each worker's age limit is spread over up to this much more, so they do not
    /// all come due together.
    public var splay: Duration
    /// `max_requests`: a worker that reported serving this many requests (`X_BATON_REQUESTS=`)
    /// is replaced; 0 = off.
    public var maxRequests: Int = 0
    /// `max_requests_jitter`: each worker's limit is `max_requests` plus up to this much more.
    public var maxRequestsJitter: Int = 0
    /// The largest `max_requests` and `max_requests_jitter` (10^12: far past any worker's life,
    /// and their sum still fits an Int).
    public static let requestCountLimit = 1_000_000_000_000
    /// `recycle_concurrency`: recycles (every reason between deploys) at once, a number in
    /// 1...workers or `auto` (the default: the surge width the rollout planner allows now).
    public var recycleConcurrency: RecycleConcurrency = .auto
    /// `recycle_spacing`: the least time between two recycle starts (default 100 ms, at most 1 h):
    /// enough to keep a burst from forking every worker in one loop turn, short enough for a
    /// fast leak.
    public var recycleSpacing: Duration = .milliseconds(100)

    /// Creates a rolling section with the config file's defaults (off).
    public init(maxAge: Duration? = nil, splay: Duration = .zero) {
        self.maxAge = maxAge
        self.splay = splay
    }
}

/// `[control]`: the control socket.
public struct ControlConfig: Sendable, Equatable, Codable {
    /// `socket`: its absolute path; defaults to ``BatonConfig/defaultControlSocket(appName:)``.
    public var socket: String
    /// `group`: members may use every verb (besides root and baton's own user); nil = nobody else.
    public var group: String?
    /// `read_group`: members may use the read-only verbs (status, history); nil = nobody else.
    public var readGroup: String?
    /// `idle_timeout`: a client that has not sent its whole request this long after it
    /// connected, or has not taken any of a pending reply for this long, is disconnected.
    public var idleTimeout: Duration

    /// Creates a control section.
    public init(socket: String, group: String? = nil, readGroup: String? = nil, idleTimeout: Duration = .seconds(10)) {
        self.socket = socket
        self.group = group
        self.readGroup = readGroup
        self.idleTimeout = idleTimeout
    }
}

/// `[metrics]`: the Prometheus endpoint.
public struct MetricsConfig: Sendable, Equatable, Codable {
    /// `address`: where to serve `/metrics`, an IP literal and port (`"127.0.0.1:9187"`); nil = off.
    public var address: String?

    /// Creates a metrics section (off by default).
    public init(address: String? = nil) {
        self.address = address
    }
}
