import TOMLKit

/// Reading each section into its model type. Every function returns a value even when the
/// section has problems (they are recorded, and the parse fails before the value is used), so
/// that one pass reports the problem earliest in the file.
extension ConfigReader {
    /// Variables baton sets per worker: configuring them would break the socket and notify
    /// protocols silently.
    static let reservedEnvironment: Set<String> = [
        "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC",
    ]

    /// Reads `[app]`; `table` nil means it is missing (reported by the caller).
    mutating func readApp(_ s: ConfigSection) -> AppConfig {
        for key in ["name", "command", "directory", "workers"] { require(s, key) }
        var app = AppConfig(name: "", command: [], directory: "/", workers: 1)
        if let name = read(s, "name", Convert.string) {
            check(
                BatonConfig.isValidAppName(name), s, "name",
                "\(BatonConfig.appNameRule), got \(Convert.quote(name))")
            app.name = name
        }
        if let command = read(s, "command", Convert.stringArray(shellHint: true)) {
            if command.isEmpty {
                report(s.path("command"), "must not be empty")
            } else {
                check(!command[0].isEmpty, s, "command", "the program (first element) must not be empty")
            }
            for (i, element) in command.enumerated() {
                if let problem = WorkerContract.argumentProblem(element) { report(s.path("command"), "element \(i + 1) \(problem)") }
            }
            app.command = command
        }
        app.directory = read(s, "directory", Convert.absolutePath) ?? app.directory
        app.workers = read(s, "workers", Convert.integer(in: 1...1024)) ?? app.workers
        app.user = read(s, "user", Convert.nonEmptyString)
        app.group = read(s, "group", Convert.nonEmptyString)
        app.environmentFile = read(s, "environment_file", Convert.absolutePath)
        app.startConcurrency = read(s, "start_concurrency", Convert.integer(in: 1...1024)) ?? app.startConcurrency
        app.environment = readEnvironment(s)
        app.runtimeDirectory = read(s, "runtime_directory", Convert.absolutePath)
        if let runtime = app.runtimeDirectory {
            check(
                runtime.utf8.count <= WorkerContract.maxRuntimeDirectoryLength, s, "runtime_directory",
                "must be at most \(WorkerContract.maxRuntimeDirectoryLength) bytes long (workers' notify sockets are bound in its notify folder, and a unix socket path is at most \(ListenAddress.maxUnixPathLength) bytes)"
            )
        }
        app.stateDirectory = read(s, "state_directory", Convert.absolutePath)
        app.startAttempts = read(s, "start_attempts", Convert.integer(in: 0...1000)) ?? app.startAttempts
        app.mode = read(s, "mode", Convert.choice([AppMode.exec, .mold])) ?? app.mode
        return app
    }

    /// Reads `[app.environment]` in file order.
    mutating func readEnvironment(_ app: ConfigSection) -> [EnvVar] {
        guard let raw = app.value("environment") else { return [] }
        guard let table = raw.table else {
            report(app.path("environment"), "expected a table ([app.environment] with NAME = \"value\" lines), got \(Convert.describe(raw))")
            return []
        }
        let path = app.path("environment")
        let names = table.keys.sorted { lhs, rhs in
            (index.order(of: path + [lhs]) ?? Int.max, lhs) < (index.order(of: path + [rhs]) ?? Int.max, rhs)
        }
        var variables: [EnvVar] = []
        for name in names {
            guard let value = table[name] else { continue }
            guard let string = value.string else {
                report(path + [name], "expected a string, got \(Convert.describe(value))")
                continue
            }
            if !Self.isValidEnvironmentName(name) {
                report(
                    path + [name],
                    "not a valid environment variable name (letters, digits and _, not starting with a digit)")
            } else if Self.reservedEnvironment.contains(name) {
                report(path + [name], "is set by baton for each worker and cannot be configured")
            } else if let problem = WorkerContract.argumentProblem(name + "=" + string) {
                report(path + [name], "\(name)=… \(problem)")
            }
            variables.append(EnvVar(name: name, value: string))
        }
        return variables
    }

    /// Reads `[listen]`.
    mutating func readListen(_ s: ConfigSection) -> ListenConfig {
        var listen = ListenConfig()
        if let texts = read(s, "addresses", Convert.stringArray(shellHint: false)) {
            for text in texts {
                guard let address = ListenAddress.parse(text) else {
                    let why = ListenAddress.whyNot(text) ?? "expected \"IP:PORT\", \"[IPv6]:PORT\" or \"unix:/absolute/path\""
                    report(s.path("addresses"), "invalid address \(Convert.quote(text)) (\(why))")
                    continue
                }
                if let why = address.unbindable {
                    report(s.path("addresses"), "cannot listen on \(Convert.quote(text)): \(why)")
                    continue
                }
                // `..` stays in the path (through a symbolic link it is not the folder before it),
                // but a path equal once `..` is taken out is the same socket file as a rule (a
                // re-audit: `D/../d/b.sock` beside `D/b.sock` passed, then serve failed).
                let twin = listen.addresses.first { other in
                    guard case .unix(let path) = address, case .unix(let otherPath) = other else { return other == address }
                    return DirectoryRules.normalize(path) == DirectoryRules.normalize(otherPath)
                }
                check(
                    twin == nil, s, "addresses",
                    "address \(Convert.quote(address.description)) is listed twice"
                        + (twin.map { $0 == address ? "" : " (as \(Convert.quote($0.description)))" } ?? ""))
                // A wildcard takes its port on every address of its family: binding both fails at start.
                if let other = listen.addresses.first(where: { $0 != address && ListenAddress.overlap($0, address) }) {
                    report(
                        s.path("addresses"),
                        "address \(Convert.quote(address.description)) overlaps \(Convert.quote(other.description)) (a wildcard address takes its port on every address)"
                    )
                }
                listen.addresses.append(address)
            }
        }
        listen.socketMode = read(s, "socket_mode", Self.fileMode) ?? listen.socketMode
        listen.socketGroup = read(s, "socket_group", Convert.nonEmptyString)
        if let backlog = read(s, "backlog", Convert.integer(in: 1...65_535)) {
            listen.backlog = Int32(backlog)
        }
        return listen
    }

    /// Reads `[readiness]`.
    mutating func readReadiness(_ s: ConfigSection) -> ReadinessConfig {
        var readiness = ReadinessConfig()
        readiness.mode = read(s, "mode", Convert.choice([ReadinessMode.notify, .delay, .exec])) ?? readiness.mode
        readiness.timeout = read(s, "timeout", Convert.duration(positive: true)) ?? readiness.timeout
        readiness.delay = read(s, "delay", Convert.duration(positive: false)) ?? readiness.delay
        readiness.probe = read(s, "probe", Convert.stringArray(shellHint: true)) ?? readiness.probe
        readiness.probeInterval =
            read(s, "probe_interval", Convert.duration(atLeast: .milliseconds(100), because: "each probe is a process")) ?? readiness.probeInterval
        readiness.probeTimeout = read(s, "probe_timeout", Convert.duration(positive: true)) ?? readiness.probeTimeout
        readiness.watchdog = read(s, "watchdog", Convert.duration(atLeast: .milliseconds(100), because: "baton's own checks run that often"))
        if let stopped = read(s, "stopped_timeout", Convert.duration(positive: false)) {
            readiness.stoppedTimeout = stopped == .zero ? nil : stopped
        }
        readiness.livenessProbe = read(s, "liveness_probe", Convert.stringArray(shellHint: true)) ?? readiness.livenessProbe
        if readiness.livenessProbe.first == "" { report(s.path("liveness_probe"), "the program (first element) must not be empty") }
        readiness.livenessInterval =
            read(s, "liveness_interval", Convert.duration(atLeast: .milliseconds(100), because: "each probe is a process"))
            ?? readiness.livenessInterval
        readiness.livenessFailures = read(s, "liveness_failures", Convert.integer(in: 1...100)) ?? readiness.livenessFailures
        readiness.bootNice = read(s, "boot_nice", Convert.integer(in: 0...19)) ?? readiness.bootNice
        if readiness.mode == .exec, s.value("probe") == nil || (s.value("probe")?.array?.isEmpty ?? false) {
            let line = index.exactLine(for: s.path("probe")) ?? index.line(for: s.path("mode"))
            report(s.path("probe"), "required (non-empty) when readiness.mode is \"exec\"", line: line)
        } else if readiness.mode == .exec, readiness.probe.first == "" {
            report(s.path("probe"), "the program (first element) must not be empty")
        }
        return readiness
    }

    /// Reads `[stop]`.
    mutating func readStop(_ s: ConfigSection) -> StopConfig {
        var stop = StopConfig()
        if let signal = read(s, "signal", Self.signal) {
            stop.signal = signal.number
            stop.signalName = signal.name
        }
        stop.timeout = read(s, "timeout", Convert.duration(positive: false)) ?? stop.timeout
        return stop
    }

    /// Reads `[deploy]`; `workers` bounds `max_surge` (nil when `app.workers` is invalid).
    mutating func readDeploy(_ s: ConfigSection, workers: Int?) -> DeployConfig {
        var deploy = DeployConfig()
        deploy.strategy =
            read(s, "strategy", Convert.choice([DeployStrategy.auto, .surge, .replace])) ?? deploy.strategy
        if let surge = read(s, "max_surge", Self.surgeWidth) {
            if let workers, case .fixed(let n) = surge, n > workers {
                report(s.path("max_surge"), "must be between 1 and app.workers (\(workers)), got \(n)")
            }
            deploy.surgeWidth = surge
        }
        if let unavailable = read(s, "max_unavailable", Convert.integer(in: 1...Int.max)) {
            // As `max_surge` (a numeric audit: 2 workers, `9223372036854775807 slots at once`).
            if let workers, unavailable > workers {
                report(s.path("max_unavailable"), "must be between 1 and app.workers (\(workers)), got \(unavailable)")
            }
            deploy.maxUnavailable = unavailable
        }
        deploy.canary = read(s, "canary", Convert.bool) ?? deploy.canary
        deploy.workerFootprint = read(s, "worker_footprint", Convert.size(positive: true))
        deploy.timeout = read(s, "timeout", Convert.duration(positive: true))
        deploy.keepReleases = read(s, "keep_releases", Convert.integer(in: 2...10_000)) ?? deploy.keepReleases
        deploy.releasesDirectory = read(s, "releases_directory", Convert.absolutePath).map(ReleaseRetention.normalize)
        deploy.stabilityWindow = read(s, "stability_window", Convert.duration(positive: false)) ?? deploy.stabilityWindow
        return deploy
    }

    /// Reads `[memory]`.
    mutating func readMemory(_ s: ConfigSection) -> MemoryConfig {
        var memory = MemoryConfig()
        memory.budget = read(s, "budget", Self.budget) ?? memory.budget
        memory.reserve = read(s, "reserve", Convert.size(positive: false)) ?? memory.reserve
        memory.threshold = read(s, "threshold", Convert.fraction) ?? memory.threshold
        memory.workerLimit = read(s, "worker_limit", Convert.size(positive: true))
        if let interval = read(s, "check_interval", Convert.duration(positive: true)) {
            // Each check reads every worker's memory: a policy audit measured 88 % of a core at 1ms.
            check(
                interval >= .milliseconds(100), s, "check_interval",
                "must be at least 100ms (each check reads every worker's memory), got \(Units.formatDuration(interval))")
            memory.checkInterval = interval
        }
        memory.minWorkerAge = read(s, "min_worker_age", Convert.duration(positive: false)) ?? memory.minWorkerAge
        memory.smapsEvery = read(s, "smaps_every", Convert.integer(in: 1...1000)) ?? memory.smapsEvery
        memory.reservationMargin = read(s, "reservation_margin", Convert.size(positive: false)) ?? memory.reservationMargin
        memory.mergeable = read(s, "mergeable", Convert.bool) ?? memory.mergeable
        return memory
    }

    /// Reads `[rolling]`; `workers` bounds `recycle_concurrency` (nil when `app.workers` is invalid).
    mutating func readRolling(_ s: ConfigSection, workers: Int? = nil) -> RollingConfig {
        var rolling = RollingConfig()
        rolling.maxAge = read(s, "max_age", Convert.duration(positive: true))
        rolling.splay = read(s, "splay", Convert.duration(positive: false)) ?? rolling.splay
        rolling.maxRequests = read(s, "max_requests", Convert.integer(in: 0...RollingConfig.requestCountLimit)) ?? rolling.maxRequests
        rolling.maxRequestsJitter =
            read(s, "max_requests_jitter", Convert.integer(in: 0...RollingConfig.requestCountLimit)) ?? rolling.maxRequestsJitter
        if let concurrency = read(s, "recycle_concurrency", Self.recycleConcurrency) {
            if let workers, case .fixed(let n) = concurrency, n > workers {
                report(s.path("recycle_concurrency"), "must be \"auto\" or between 1 and app.workers (\(workers)), got \(n)")
            }
            rolling.recycleConcurrency = concurrency
        }
        if let spacing = read(s, "recycle_spacing", Convert.duration(positive: false)) {
            check(spacing <= .seconds(3600), s, "recycle_spacing", "must be at most 1h, got \(Units.formatDuration(spacing))")
            rolling.recycleSpacing = spacing
        }
        return rolling
    }

    /// Reads `[control]`; the socket defaults from the app's name.
    mutating func readControl(_ s: ConfigSection, appName: String) -> ControlConfig {
        var control = ControlConfig(socket: BatonConfig.defaultControlSocket(appName: appName))
        control.socket = read(s, "socket", Convert.absolutePath) ?? control.socket
        check(
            control.socket.utf8.count <= ListenAddress.maxUnixPathLength, s, "socket",
            "must be at most \(ListenAddress.maxUnixPathLength) bytes long (a unix socket path)")
        control.group = read(s, "group", Convert.nonEmptyString)
        control.readGroup = read(s, "read_group", Convert.nonEmptyString)
        control.idleTimeout =
            read(s, "idle_timeout", Convert.duration(atLeast: .seconds(1), because: "a client on a busy host needs that long to send its request"))
            ?? control.idleTimeout
        return control
    }

    /// Reads `[metrics]`.
    mutating func readMetrics(_ s: ConfigSection) -> MetricsConfig {
        MetricsConfig(address: read(s, "address", Self.tcpAddress))
    }

    // MARK: - Conversions only the sections use

    /// `"auto"` or a size.
    static func budget(_ raw: TOMLValueConvertible) -> Conversion<MemoryBudget> {
        if raw.string == "auto" { return .value(.auto) }
        switch Convert.size(positive: true)(raw) {
        case .value(let bytes): return .value(.bytes(bytes))
        case .invalid(let message) where message.hasPrefix("must be at most"):
            return .invalid(message)
        case .invalid:
            return .invalid(#"expected "auto" or a size with a unit, like "4GiB", got "# + Convert.describeValue(raw))
        }
    }

    /// `max_surge`: `"auto"` or a number of slots, at least 1.
    static func surgeWidth(_ raw: TOMLValueConvertible) -> Conversion<SurgeWidth> {
        if raw.string == "auto" { return .value(.auto) }
        guard let n = raw.int else { return .invalid(#"expected "auto" or an integer, got "# + Convert.describeValue(raw)) }
        return n >= 1 ? .value(.fixed(n)) : .invalid("must be \"auto\" or at least 1, got \(n)")
    }

    /// `recycle_concurrency`: `"auto"` or a number of recycles at once, at least 1.
    static func recycleConcurrency(_ raw: TOMLValueConvertible) -> Conversion<RecycleConcurrency> {
        if raw.string == "auto" { return .value(.auto) }
        guard let n = raw.int else { return .invalid(#"expected "auto" or an integer, got "# + Convert.describeValue(raw)) }
        return n >= 1 ? .value(.fixed(n)) : .invalid("must be \"auto\" or at least 1, got \(n)")
    }

    /// A file mode written as a string of octal digits (`"0660"`).
    static func fileMode(_ raw: TOMLValueConvertible) -> Conversion<UInt32> {
        let hint = #"expected a file mode as a string of octal digits, like "0660", got "#
        guard let text = raw.string, (1...4).contains(text.utf8.count),
            text.utf8.allSatisfy({ (0x30...0x37).contains($0) }), let mode = UInt32(text, radix: 8)
        else { return .invalid(hint + Convert.describeValue(raw)) }
        return .value(mode)
    }

    /// A signal name (`"SIGTERM"`, `"TERM"`, any case) as its Linux number and canonical name.
    static func signal(_ raw: TOMLValueConvertible) -> Conversion<(number: Int32, name: String)> {
        guard let text = raw.string else {
            return .invalid(#"expected a signal name, like "SIGTERM", got "# + Convert.describeValue(raw))
        }
        guard let signal = StopConfig.parseSignal(text) else {
            let names = StopConfig.signals.map(\.name).joined(separator: ", ")
            return .invalid("unknown signal \(Convert.quote(text)) (expected one of \(names))")
        }
        return .value(signal)
    }

    /// A TCP address with an IP literal, kept in canonical form.
    static func tcpAddress(_ raw: TOMLValueConvertible) -> Conversion<String> {
        guard let text = raw.string else { return .invalid("expected a string, got \(Convert.describe(raw))") }
        guard let address = ListenAddress.parse(text), !address.isUnix else {
            return .invalid(#"must be an IP address and port, like "127.0.0.1:9187", got "# + Convert.quote(text))
        }
        return .value(address.description)
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`.
    static func isValidEnvironmentName(_ name: String) -> Bool {
        EnvironmentFile.isValidName(name)
    }
}

extension StopConfig {
    /// The stop signals baton accepts, with their Linux numbers (x86_64 and arm64 agree).
    public static let signals: [(name: String, number: Int32)] = [
        ("SIGTERM", 15), ("SIGINT", 2), ("SIGQUIT", 3), ("SIGHUP", 1), ("SIGUSR1", 10),
        ("SIGUSR2", 12), ("SIGWINCH", 28), ("SIGKILL", 9),
    ]

    /// Looks up a signal by name, with or without the `SIG` prefix, in any case:
    /// `"term"` → `(15, "SIGTERM")`; nil for a signal not in ``signals``.
    public static func parseSignal(_ name: String) -> (number: Int32, name: String)? {
        let upper = name.uppercased()
        let canonical = upper.hasPrefix("SIG") ? upper : "SIG" + upper
        guard let match = signals.first(where: { $0.name == canonical }) else { return nil }
        return (match.number, match.name)
    }
}
