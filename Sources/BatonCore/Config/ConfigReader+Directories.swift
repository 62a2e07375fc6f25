import Glibc

extension ConfigReader {
    /// Records every ``DirectoryRules`` violation of `config`'s directories against its key and line.
    mutating func checkDirectories(_ config: BatonConfig) {
        let app = config.app
        let state = DirectoryRules.Entry(
            key: ["app", "state_directory"], path: app.stateDirectory ?? "/var/lib/baton/\(app.name)", isDefault: app.stateDirectory == nil)
        let runtime = DirectoryRules.Entry(
            key: ["app", "runtime_directory"], path: app.runtimeDirectory ?? "/run/baton/\(app.name)",
            isDefault: app.runtimeDirectory == nil)
        let releases = config.deploy.releasesDirectory.map { DirectoryRules.Entry(key: ["deploy", "releases_directory"], path: $0) }
        for violation in DirectoryRules.violations(
            state: state, runtime: runtime, releases: releases, appDirectory: app.directory, configFolder: configFolder)
        {
            report(violation.key, violation.message)
        }
    }

    /// The absolute folder of the config file (relative paths are taken from the working
    /// directory); nil for a config that did not come from a file.
    private var configFolder: String? {
        guard !path.isEmpty else { return nil }
        var absolute = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard getcwd(&buffer, buffer.count) != nil else { return nil }
            absolute = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
        }
        let normalized = DirectoryRules.normalize(absolute)
        guard let slash = normalized.lastIndex(of: "/"), slash != normalized.startIndex else { return "/" }
        return String(normalized[..<slash])
    }
}
