import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Synchronization

/// The state directory in memory; a test makes a write fail by setting its error.
final class MemoryStore: ReleaseStore {
    private struct Contents {
        var releaseState: ReleaseState?
        var history: [HistoryEntry] = []
        var deployed: [String] = []
        var inProgress: HistoryEntry?
        var saveError: SystemError?
        var beginError: SystemError?
        var appendError: SystemError?
        var checkError: SystemError?
        var loadError: SystemError?
    }
    private let contents = Mutex(Contents())

    /// The persisted release state.
    var releaseState: ReleaseState? { contents.withLock { $0.releaseState } }
    /// The deploy in progress, as a baton killed now would leave it.
    var inProgress: HistoryEntry? {
        get { contents.withLock { $0.inProgress } }
        set { contents.withLock { $0.inProgress = newValue } }
    }
    /// When set, `save` (the commit) fails with it.
    var saveError: SystemError? {
        get { contents.withLock { $0.saveError } }
        set { contents.withLock { $0.saveError = newValue } }
    }
    /// When set, `append` (history) fails with it.
    var appendError: SystemError? {
        get { contents.withLock { $0.appendError } }
        set { contents.withLock { $0.appendError = newValue } }
    }
    /// When set, `beginDeploy` fails with it.
    var beginError: SystemError? {
        get { contents.withLock { $0.beginError } }
        set { contents.withLock { $0.beginError = newValue } }
    }

    func loadDeployedReleases() -> [String] { contents.withLock { $0.deployed } }
    func saveDeployedReleases(_ folders: [String]) throws(SystemError) { contents.withLock { $0.deployed = folders } }
    /// When set, `loadReleaseState` fails with it (a read, not a decode, when not EBADMSG).
    var loadError: SystemError? {
        get { contents.withLock { $0.loadError } }
        set { contents.withLock { $0.loadError = newValue } }
    }
    func loadReleaseState() throws(SystemError) -> ReleaseState? {
        if let error = loadError { throw error }
        return releaseState
    }
    func keepCorruptReleaseState() throws(SystemError) -> String { "release.json.corrupt" }
    /// When set, `checkWritable` (the start-up check) fails with it.
    var checkError: SystemError? {
        get { contents.withLock { $0.checkError } }
        set { contents.withLock { $0.checkError = newValue } }
    }
    func checkWritable() throws(SystemError) { if let error = checkError { throw error } }
    /// The thread the test drives the loop on (`DaemonHarness` sets it).
    let loopThread = Mutex<pthread_t?>(nil)
    private let savesOnLoopCount = Mutex(0)
    /// Commits written on the loop's thread (each one fsyncs twice on a real disk).
    var savesOnLoop: Int { savesOnLoopCount.withLock { $0 } }

    /// While set, `save` waits (a commit whose fsync takes long).
    let saveBlocked = Mutex(false)

    func save(_ state: ReleaseState) throws(SystemError) {
        while saveBlocked.withLock({ $0 }) { usleep(1000) }
        if let loop = loopThread.withLock({ $0 }), pthread_equal(loop, pthread_self()) != 0 { savesOnLoopCount.withLock { $0 += 1 } }
        if let error = saveError { throw error }
        contents.withLock { $0.releaseState = state }
    }
    func append(_ entries: [HistoryEntry]) throws(SystemError) {
        if let error = appendError { throw error }
        contents.withLock { $0.history += entries }
    }
    func loadHistory() -> [HistoryEntry] { contents.withLock { $0.history } }
    func beginDeploy(_ entry: HistoryEntry) throws(SystemError) {
        if let error = beginError { throw error }
        contents.withLock { $0.inProgress = entry }
    }
    func finishDeploy() { contents.withLock { $0.inProgress = nil } }
    func unfinishedDeploy() -> HistoryEntry? { inProgress }

    private let removed = Mutex(false)
    /// What `rm -rf` of the state directory does: every file gone, until it is opened again.
    func remove() {
        contents.withLock { $0 = Contents() }
        removed.withLock { $0 = true }
    }
    func lockLost() -> Bool { removed.withLock { $0 } }
    func hasReleaseState() -> Bool { releaseState != nil }
    /// What `rm release.json` does.
    func removeReleaseState() { contents.withLock { $0.releaseState = nil } }
    func unlock() {}
    /// Opened again (the supervisor made the directory again).
    func reopen() { removed.withLock { $0 = false } }
}
