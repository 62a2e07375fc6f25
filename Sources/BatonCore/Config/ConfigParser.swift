import TOMLKit

extension BatonConfig {
    /// Every section and the keys it accepts (see ``ConfigSchema/sections``).
    static var schema: [(section: String, keys: [String])] { ConfigSchema.sections }

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
        // A NUL would end the parser's C string silently; refuse it (and absurd sizes) first.
        if let error = ConfigPrecheck.check(text.utf8, path: path) { throw error }
        if let line = ConfigPrecheck.nulEscapeLine(text.utf8) {
            throw ConfigError(
                path: path, line: line,
                message: #"contains the escape "\u0000" (a NUL character), which no path, argument or environment value can hold"#)
        }
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
        var config = BatonConfig(
            app: app,
            listen: reader.readListen(section("listen")),
            readiness: reader.readReadiness(section("readiness")),
            stop: reader.readStop(section("stop")),
            deploy: reader.readDeploy(section("deploy"), workers: workersValid ? app.workers : nil),
            memory: reader.readMemory(section("memory")),
            rolling: reader.readRolling(section("rolling"), workers: workersValid ? app.workers : nil),
            control: reader.readControl(section("control"), appName: app.name),
            metrics: reader.readMetrics(section("metrics")),
            sourcePath: path)
        config.mold = reader.readMold(section("mold"))
        reader.checkDirectories(config)
        reader.checkMetricsAddress(config)
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
        var message = "unknown \(isTable ? "table" : "key") \(Convert.quote(ConfigSchema.echoed(joined)))"
        if let suggestion = Self.suggestion(for: path) {
            message += " (did you mean \(Convert.quote(suggestion))?)"
        }
        reportUnkeyed(at: path, message)
    }

    /// The known key `path` most likely stands for (see ``ConfigSchema/suggestion(for:)``).
    static func suggestion(for path: [String]) -> String? {
        ConfigSchema.suggestion(for: path)
    }

    /// The optimal-string-alignment distance (see ``ConfigSchema/editDistance(_:_:)``).
    static func editDistance(_ a: String, _ b: String) -> Int {
        ConfigSchema.editDistance(a, b)
    }

    /// Reports a metrics address that is also a listen address: baton would bind both and fail
    /// at start with "address in use" (a wildcard host overlaps every host of its port).
    mutating func checkMetricsAddress(_ config: BatonConfig) {
        guard let text = config.metrics.address, case .tcp(let host, let port)? = ListenAddress.parse(text), port != 0
        else { return }
        let wildcards: Set<String> = ["0.0.0.0", "::"]
        for address in config.listen.addresses {
            guard case .tcp(let listenHost, let listenPort) = address, listenPort == port else { continue }
            if listenHost == host || wildcards.contains(listenHost) || wildcards.contains(host) {
                report(["metrics", "address"], "must differ from the listen address \(Convert.quote(address.description))")
                return
            }
        }
    }
}
