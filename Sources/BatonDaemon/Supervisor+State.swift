import BatonCore
import BatonSystem
import Glibc
import Logging

/// The state directory at start-up: the persisted release and history, and what is wrong
/// with them, said loudly.
extension Supervisor {
    /// The state directory: `[app] state_directory`, else systemd's
    /// $STATE_DIRECTORY, else /var/lib/baton/NAME.
    public static func stateDirectory(for config: BatonConfig) -> String {
        if let dir = config.app.stateDirectory { return dir }
        if let env = getenv("STATE_DIRECTORY"), let first = String(cString: env).split(separator: ":").first {
            return String(first)
        }
        return BatonConfig.defaultStateDirectory(appName: config.app.name)
    }

    /// Loads the persisted release (it wins over `app.directory`), history and the release
    /// folders baton deployed. What cannot be used is said loudly (ERROR, `baton status`) and
    /// never silently replaced: an unreadable release.json stays as it is (a copy in
    /// release.json.corrupt) until a deploy succeeds; a persisted release whose folder is gone
    /// falls back to `[app] directory`. A state directory others may write in is refused (thrown).
    func loadState() throws(DirectoryError) {
        let directory = releases.directory
        let store: any ReleaseStore
        do {
            store = try host.openStateStore(directory)
        } catch {
            var error = error
            error.key = Self.directoryKey(config.app.stateDirectory, environment: "STATE_DIRECTORY", what: "state directory")
            switch error.reason {
            case .writableByOthers, .inUse: throw error
            default: break
            }
            releases.recordProblem("state directory \(directory) unusable (\(error)): deploys cannot be committed")
            return
        }
        // Another app's release.json: refused before anything of it is used or written over.
        if let other = (try? store.loadReleaseState())??.app, other != config.app.name {
            store.unlock()
            throw DirectoryError(
                path: directory, reason: .otherApp(other),
                key: Self.directoryKey(config.app.stateDirectory, environment: "STATE_DIRECTORY", what: "state directory"))
        }
        releases.load(from: store, fallback: Release(directory: config.app.directory), releaseExists: Filesystem.isDirectory, now: wallClockNow())
    }
}
