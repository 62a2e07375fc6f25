import TOMLKit

extension BatonConfig {
    /// Every section and the keys it accepts, in documentation order. `app.environment` is a
    /// table of free-form names.
    static let schema: [(section: String, keys: [String])] = [
        (
            "app",
            [
                "name", "command", "directory", "workers", "user", "group", "environment_file",
                "start_concurrency", "environment", "runtime_directory", "state_directory", "start_attempts",
            ]
        ),
        ("listen", ["addresses", "socket_mode", "backlog"]),
        (
            "readiness",
            [
                "mode", "timeout", "delay", "probe", "probe_interval", "probe_timeout", "watchdog", "stopped_timeout",
                "liveness_probe", "liveness_interval", "liveness_failures",
            ]
        ),
        ("stop", ["signal", "timeout"]),
        ("deploy", ["strategy", "max_surge", "canary", "worker_footprint", "timeout", "keep_releases", "releases_directory", "stability_window"]),
        (
            "memory",
            [
                "budget", "reserve", "threshold", "worker_limit", "check_interval", "min_worker_age",
                "smaps_every",
            ]
        ),
        ("rolling", ["max_age", "splay"]),
        ("control", ["socket", "group", "read_group", "idle_timeout"]),
        ("metrics", ["address"]),
    ]

    /// Parses and validates a config file's text.
    ///
    /// Unknown tables and keys, wrong types, values without units and out-of-range values are
    /// all errors; when there are several, the one earliest in the file is thrown.
    ///
    /// - Parameters:
    ///   - text: The TOML document.
    ///   - path: Where it came from, for messages and ``sourcePath``.
    /// - Throws: ``ConfigError``, whose description is one line such as
    ///   `/etc/baton/shop.toml:4: app.workers: must be between 1 and 1024, got 0`.
    public static func parse(_ text: String, path: String) throws(ConfigError) -> BatonConfig {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let message = error.description.split(whereSeparator: \.isNewline).joined(separator: " ")
            throw ConfigError(
                path: path, line: error.source.begin.line, column: error.source.begin.column,
                message: message)
        } catch {
            throw ConfigError(path: path, message: "cannot parse TOML: \(error)")
        }

        var reader = ConfigReader(path: path, index: KeyLineIndex(text))
        reader.checkKeys(root)
        func section(_ name: String) -> ConfigSection {
            ConfigSection(path: [name], table: root[name]?.table)
        }

        let appSection = section("app")
        if root["app"] == nil {
            reader.report(["app"], "required table is missing")
        }
        let app = reader.readApp(appSection)
        // `max_surge` is checked against `workers` only when that is itself valid.
        let workersValid =
            appSection.value("workers")?.int != nil && !reader.errors.contains { $0.key == "app.workers" }
        let config = BatonConfig(
            app: app,
            listen: reader.readListen(section("listen")),
            readiness: reader.readReadiness(section("readiness")),
            stop: reader.readStop(section("stop")),
            deploy: reader.readDeploy(section("deploy"), workers: workersValid ? app.workers : nil),
            memory: reader.readMemory(section("memory")),
            rolling: reader.readRolling(section("rolling")),
            control: reader.readControl(section("control"), appName: app.name),
            metrics: reader.readMetrics(section("metrics")),
            sourcePath: path)
        reader.checkDirectories(config)
        if let error = reader.firstError { throw error }
        return config
    }
}

extension ConfigReader {
    /// Reports every table or key the schema does not know, and sections that are not tables.
    mutating func checkKeys(_ root: TOMLTable) {
        let sections = Dictionary(uniqueKeysWithValues: BatonConfig.schema.map { ($0.section, Set($0.keys)) })
        for (name, value) in root {
            guard let allowed = sections[name] else {
                reportUnknown([name], isTable: value.type == .table)
                continue
            }
            guard let table = value.table else {
                report([name], "expected a table, got \(Convert.describe(value))")
                continue
            }
            for (key, value) in table where !allowed.contains(key) {
                reportUnknown([name, key], isTable: value.type == .table)
            }
        }
    }

    /// Reports `path` as an unknown key or table, suggesting the likely intended key.
    private mutating func reportUnknown(_ path: [String], isTable: Bool) {
        let joined = KeyPath.join(path)
        var message = "unknown \(isTable ? "table" : "key") \(Convert.quote(joined))"
        if let suggestion = Self.suggestion(for: path) {
            message += " (did you mean \(Convert.quote(suggestion))?)"
        }
        reportUnkeyed(at: path, message)
    }

    /// The known key `path` most likely stands for: the closest within edit distance 2, else
    /// the same key name in another section (`deploy.max_age` → `rolling.max_age`).
    static func suggestion(for path: [String]) -> String? {
        let joined = KeyPath.join(path)
        let known: [(path: String, key: String?)] = BatonConfig.schema.flatMap { entry in
            [(entry.section, nil)] + entry.keys.map { ("\(entry.section).\($0)", $0) }
        }
        // Compare like with like: a top-level name with sections, a key with keys.
        let candidates = known.filter { ($0.key == nil) == (path.count == 1) }
        var best: (path: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(joined, candidate.path)
            if distance <= 2, distance < (best?.distance ?? Int.max) {
                best = (candidate.path, distance)
            }
        }
        if let best { return best.path }
        guard path.count == 2 else { return nil }
        return candidates.first { $0.key == path[1] }?.path
    }

    /// The optimal-string-alignment distance: insertions, deletions, substitutions and
    /// transpositions of neighbours each cost 1 (`wrokers` is one edit from `workers`).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
