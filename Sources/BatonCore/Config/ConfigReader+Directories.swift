import Glibc

extension ConfigReader {
    /// Records every ``DirectoryRules`` violation of `config`'s directories against its key and line.
    mutating func checkDirectories(_ config: BatonConfig) {
        let app = config.app
        let state = DirectoryRules.Entry(
            key: ["app", "state_directory"], path: app.stateDirectory ?? BatonConfig.defaultStateDirectory(appName: app.name),
            isDefault: app.stateDirectory == nil)
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

    /// The absolute folder of the config file; nil for a config that did not come from a file.
    private var configFolder: String? { path.isEmpty ? nil : DirectoryRules.folder(ofFile: path) }
}
