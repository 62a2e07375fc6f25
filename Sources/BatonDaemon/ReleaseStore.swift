import BatonCore
import BatonSystem

/// The state directory as the supervisor uses it: the current and previous release, history,
/// the deploy in progress and the release folders baton deployed. `StateStore` (files under
/// the state directory) in baton; an in-memory store in the tests of BatonDaemon. Opened
/// through `SupervisorHost.openStateStore`.
protocol ReleaseStore: Sendable {
    /// The release folders baton deployed, oldest first.
    func loadDeployedReleases() -> [String]
    /// Replaces that list.
    func saveDeployedReleases(_ folders: [String]) throws(SystemError)
    /// The persisted release state; nil when none was ever written; throws when unreadable.
    func loadReleaseState() throws(SystemError) -> ReleaseState?
    /// Keeps an unreadable release state aside; returns where.
    func keepCorruptReleaseState() throws(SystemError) -> String
    /// Throws when nothing can be written.
    func checkWritable() throws(SystemError)
    /// Persists the release state (a deploy's commit).
    func save(_ state: ReleaseState) throws(SystemError)
    /// Appends history entries (oldest first) in one write: all of them, or none.
    func append(_ entries: [HistoryEntry]) throws(SystemError)
    /// History, oldest first.
    func loadHistory() -> [HistoryEntry]
    /// Records the deploy that starts now.
    func beginDeploy(_ entry: HistoryEntry) throws(SystemError)
    /// The deploy ended.
    func finishDeploy()
    /// The deploy a previous baton never finished (left in place: `finishDeploy` removes it);
    /// nil when none.
    func unfinishedDeploy() -> HistoryEntry?
    /// What of the state directory's history and records could not be read (a write cut short
    /// by a full disk or a crash), one line each; the loads above skip it.
    func unreadableStateFiles() -> [String]
    /// Whether the directory's lock is no longer this store's (the directory, or its lock,
    /// removed or replaced since it was opened).
    func lockLost() -> Bool
    /// Lets go of the lock (the store is replaced).
    func unlock()
    /// Whether a release state is persisted (release.json is there).
    func hasReleaseState() -> Bool
    /// The error a commit would meet when a folder is where release.json goes; nil otherwise.
    func releaseStateFolderError() -> SystemError?
}

extension ReleaseStore {
    func unreadableStateFiles() -> [String] { [] }
    func releaseStateFolderError() -> SystemError? { nil }
}

extension StateStore: ReleaseStore {}
