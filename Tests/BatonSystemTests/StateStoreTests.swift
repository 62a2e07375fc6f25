import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// The state directory's deploy-in-progress record: what a baton killed mid-deploy leaves
/// behind, and what the next one finds (once).
@Suite("StateStore: deploy in progress")
struct StateStoreTests {
    let entry = HistoryEntry(
        kind: .deploy, release: "/srv/app/r2", previousRelease: "/srv/app/r1", outcome: .inProgress, detail: nil,
        startedAt: 1_796_000_000, duration: 0, uid: 0)

    @Test("an unfinished deploy is found after a restart of the store, until it is finished")
    func unfinishedFoundUntilFinished() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        try StateStore(directory: directory).beginDeploy(entry)
        let restarted = try StateStore(directory: directory)
        #expect(restarted.unfinishedDeploy() == entry)
        #expect(restarted.unfinishedDeploy() == entry, "reading it leaves it")
        restarted.finishDeploy()
        #expect(restarted.unfinishedDeploy() == nil)
        #expect(try restarted.loadReleaseState() == nil, "beginning a deploy must not commit its release")
    }

    /// A disk audit cut history.jsonl's last line short and wrote garbage into deployed.json and
    /// deploy.json (as a write on a full disk or a crash may leave them): baton started without
    /// a word, and `deploy --attach` answered with an older deploy.
    @Test("unreadable history lines and records are named, one line each")
    func unreadableFilesAreNamed() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        #expect(store.unreadableStateFiles().isEmpty)
        try store.append([entry])
        let history = ProcFS.read(directory + "/history.jsonl") ?? ""
        TestPaths.write(directory + "/history.jsonl", history + String(history.dropLast(30)) + "\n")
        TestPaths.write(directory + "/deployed.json", "{\"folders\": [\"/srv/app/r")
        TestPaths.write(directory + "/deploy.json", "\u{1}garbage")
        let problems = store.unreadableStateFiles()
        #expect(problems.count == 3, "\(problems)")
        #expect(problems.first?.hasSuffix("history.jsonl: 1 unreadable line(s) skipped (a write cut short?); they go at its next rewrite") == true)
        #expect(store.loadHistory() == [entry], "the readable line stays")
    }

    /// A state audit: a state file that cannot be read at all (a folder in its place) was taken
    /// for no file, without a word: 16 history lines gone, and retention's order with them.
    @Test("a state file that cannot be read at all is named, with what baton takes it for")
    func filesThatCannotBeReadAreNamed() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        for name in ["history.jsonl", "deployed.json", "deploy.json"] { #expect(mkdir(directory + "/" + name, 0o755) == 0) }
        #expect(
            store.unreadableStateFiles() == [
                "\(directory)/history.jsonl cannot be read (Is a directory): taken as an empty history",
                "\(directory)/deployed.json cannot be read (Is a directory): taken as empty (retention keeps every release folder it does not know)",
                "\(directory)/deploy.json cannot be read (Is a directory): the operation it recorded gets no history line",
            ])
    }

    @Test("a finished deploy leaves nothing to find")
    func finishedLeavesNothing() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        #expect(store.unfinishedDeploy() == nil)
        try store.beginDeploy(entry)
        store.finishDeploy()
        #expect(store.unfinishedDeploy() == nil)
    }

    @Test("history lines appended together land in order, and the file keeps the last historyLimit")
    func historyAppendsInOrder() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        let lines = (0..<(StateStore.historyLimit + 2)).map { i in
            var e = entry
            e.release = "/srv/app/r\(i)"
            return e
        }
        try store.append([lines[0]])
        try store.append(Array(lines[1...]))
        let history = try StateStore(directory: directory).loadHistory()
        #expect(history.count == StateStore.historyLimit)
        #expect(history.first?.release == "/srv/app/r2" && history.last?.release == "/srv/app/r\(StateStore.historyLimit + 1)")
    }
}

/// The release folders baton deployed (`deployed.json`): what retention may remove.
@Suite("StateStore: deployed release folders")
struct StateStoreDeployedTests {
    @Test("round-trips; a missing file, or one without the list (older or foreign), is an empty list")
    func deployedList() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        #expect(store.loadDeployedReleases() == [])
        try store.saveDeployedReleases(["/srv/app/releases/r2", "/srv/app/releases/r3"])
        #expect(try StateStore(directory: directory).loadDeployedReleases() == ["/srv/app/releases/r2", "/srv/app/releases/r3"])
        TestPaths.write(directory + "/deployed.json", "{}\n")
        #expect(store.loadDeployedReleases() == [])
    }
}

/// release.json that exists but cannot be decoded is an error, never a fresh start.
@Suite("StateStore: unreadable release state")
struct StateStoreCorruptTests {
    @Test("a truncated release.json throws; its copy is kept as release.json.corrupt; absent is nil")
    func truncatedThrows() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        #expect(try store.loadReleaseState() == nil)
        try store.save(ReleaseState(current: Release(directory: "/srv/app/r2"), previous: Release(directory: "/srv/app/r1")))
        let text = try #require(ProcFS.read(directory + "/release.json"))
        TestPaths.write(directory + "/release.json", String(text.prefix(20)))
        #expect(throws: SystemError.self) { try store.loadReleaseState() }
        let copy = try store.keepCorruptReleaseState()
        #expect(copy == directory + "/release.json.corrupt")
        #expect(ProcFS.read(copy) == String(text.prefix(20)))
        try store.checkWritable()
    }

    /// A re-audit: a baton killed during the commit's fsync left `release.json.tmp.PID` in the
    /// state directory for good.
    @Test("the lock's holder removes the temp files a killed baton left, never its own")
    func staleTemporariesRemoved() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        let store = try StateStore(directory: directory)
        TestPaths.write(directory + "/release.json.tmp.999999", "{")
        TestPaths.write(directory + "/history.jsonl.tmp.\(getpid())", "mine")
        TestPaths.write(directory + "/notes.tmp.txt", "not ours")
        try store.lock()
        #expect(access(directory + "/release.json.tmp.999999", F_OK) != 0)
        #expect(access(directory + "/history.jsonl.tmp.\(getpid())", F_OK) == 0)
        #expect(access(directory + "/notes.tmp.txt", F_OK) == 0)
    }

    /// A state audit: with `.lock` a folder (or immutable) the lock was skipped without a word,
    /// and two batons ran on one state directory, each deploy overwriting the other's release.
    @Test("a .lock baton cannot write is locked as it is: a second holder is refused")
    func aLockFileBatonCannotWrite() throws {
        let directory = TestPaths.temporaryDirectory("state")
        defer { TestPaths.remove(directory) }
        #expect(mkdir(directory + "/.lock", 0o755) == 0)
        let first = try StateStore(directory: directory)
        let second = try StateStore(directory: directory)
        try first.lock()
        #expect(throws: DirectoryError.self) { try second.lock() }
    }
}
