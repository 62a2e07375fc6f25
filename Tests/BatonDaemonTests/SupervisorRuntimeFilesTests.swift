import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// The runtime directory's files removed from under a running baton (`rm -rf`, a tmpfiles
/// clean-up). A disk audit removed `notify/`: every start failed from then on, and with a
/// watchdog every running worker, its socket gone, was replaced by workers that could not
/// start (`0/3 workers ready` until the folder was made again by hand). Fake host and clock,
/// real notify sockets and datagrams from the test process.
@Suite struct SupervisorRuntimeFilesTests {
    @Test func aRemovedNotifyFolderIsMadeAgainAndTheWorkersSocketsBoundAgain() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let notify = h.supervisor.notifyDirectory
        let workers = h.supervisor.slots.compactMap(\.current)
        let paths = workers.compactMap(\.notifyPath)
        #expect(paths.count == 2)
        for path in paths { unlink(path) }
        #expect(rmdir(notify) == 0)
        h.supervisor.checkRuntimeFiles()  // what the check every 5 s does (`serve` schedules it)
        #expect(access(notify, F_OK) == 0, "made again")
        #expect(paths.allSatisfy { access($0, F_OK) == 0 }, "bound again")
        // A worker's next message reaches baton.
        h.host.fakeProcesses.add([getpid()], to: workers[0].pid)
        try SupervisorNotifyTests.send("STATUS=still here", to: paths[0])
        h.advance(by: .zero)
        #expect(workers[0].statusText == "still here")
    }

    @Test func aStartAfterTheFolderWasRemovedMakesItAgain() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let notify = h.supervisor.notifyDirectory
        let old = try #require(h.supervisor.slots[0].current)
        if let path = old.notifyPath { unlink(path) }
        #expect(rmdir(notify) == 0)
        // The crash's respawn comes before the next check.
        h.host.child(old.pid)?.end(.exited(1))
        h.advance(by: .seconds(1))
        let new = try #require(h.supervisor.slots[0].current)
        #expect(new.pid != old.pid)
        #expect(new.notifyPath.map { access($0, F_OK) == 0 } == true, "its socket is bound in the folder made again")
        h.finishOperations()
        #expect(h.allReady)
    }

    /// A re-audit: with a 2 s watchdog, healthy workers whose sockets were removed were replaced
    /// (10 of 17 runs) before the next check bound them again: their pings could not arrive.
    @Test func theWatchdogWaitsForASocketBatonLost() throws {
        let h = try DaemonHarness(workers: 1) { $0.readiness.watchdog = .seconds(2) }
        try h.start()
        h.supervisor.startLivenessChecks()
        let worker = try #require(h.supervisor.slots[0].current)
        let path = try #require(worker.notifyPath)
        unlink(path)
        #expect(rmdir(h.supervisor.notifyDirectory) == 0)
        h.advance(by: .milliseconds(2500))
        #expect(worker.state == .ready, "not the worker's fault")
        #expect(access(path, F_OK) == 0, "bound again before it was judged")
        h.advance(by: .seconds(3))
        #expect(worker.state != .ready, "then it must ping again, or go")
    }

    /// A re-audit (1 of 1): `notify` made a regular file: every worker was replaced for its
    /// watchdog, then every start failed on "Not a directory" (`0/2 workers ready`).
    @Test func aFileInPlaceOfTheNotifyFolderIsSaidAndNoWorkerPaysForIt() throws {
        let h = try DaemonHarness(workers: 2) { $0.readiness.watchdog = .seconds(2) }
        try h.start()
        h.supervisor.startLivenessChecks()
        let workers = h.supervisor.slots.compactMap(\.current)
        for worker in workers { if let path = worker.notifyPath { unlink(path) } }
        let notify = h.supervisor.notifyDirectory
        #expect(rmdir(notify) == 0)
        close(open(notify, O_CREAT | O_WRONLY, 0o600))
        h.advance(by: .seconds(10))
        #expect(workers.allSatisfy { $0.state == .ready })
        let problems = h.supervisor.statusReport(memory: [:]).problems ?? []
        #expect(problems.contains { $0.contains("/notify is not a folder (another file is there)") }, "\(problems)")
        unlink(notify)
    }

    /// The names are base 36 now (a runtime directory of 75 bytes leaves room for the longest):
    /// a dead baton's sockets, so named or in an older baton's decimal names, still go at the
    /// next start; anything else stays.
    @Test func aDeadBatonsNotifySocketsGoInEitherNaming() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let notify = h.supervisor.notifyDirectory
        let dead: pid_t = 4_242_424
        let names = [
            WorkerContract.notifySocketName(slot: 0, generation: 40, batonPID: dead), "w1-12-\(dead).sock",
            WorkerContract.notifySocketName(slot: 2, generation: 3, batonPID: dead + 1),
        ]
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        for name in names { sockets.append(try Sockets.bindUnix(path: notify + "/" + name, type: Int32(SOCK_DGRAM.rawValue), mode: 0o600)) }
        let plainFile = notify + "/" + WorkerContract.notifySocketName(slot: 3, generation: 1, batonPID: dead)
        close(open(plainFile, O_CREAT | O_WRONLY, 0o600))
        let previous = InstanceRecord(app: "fake", pid: dead, startTime: 7, listeners: [], workers: [])
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        try h.supervisor.checkPreviousInstance()
        #expect(access(notify + "/" + names[0], F_OK) != 0 && access(notify + "/" + names[1], F_OK) != 0, "the dead baton's go")
        #expect(access(notify + "/" + names[2], F_OK) == 0, "another baton's stays")
        #expect(access(plainFile, F_OK) == 0, "a file that is not a socket stays")
        unlink(notify + "/" + names[2])
        unlink(plainFile)
    }

    /// A state audit: after `kill -9` of baton and a damaged `instance.json`, every start failed
    /// on `Address already in use` (held by the workers the record would have named) and
    /// nothing named the record.
    @Test func anUnreadableInstanceRecordIsSaid() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.host.fakeFiles[h.supervisor.instancePath] = "garbage{"
        h.log.clear()
        try h.supervisor.checkPreviousInstance()
        #expect(
            h.log.lines(containing: "instance.json is unreadable (8 bytes): its baton's workers cannot be taken over").count == 1, "\(h.log.lines)")
    }
}

/// The runtime directory's lock (a multi-app audit: two batons given one runtime directory,
/// started at once, both passed the record's check and both ran).
@Suite struct SupervisorRuntimeLockTests {
    @Test func aSecondBatonOnTheSameRuntimeDirectoryIsRefusedByItsLock() throws {
        let first = try DaemonHarness(workers: 1)
        try first.start()
        let second = try DaemonHarness(workers: 1)
        second.supervisor.config.app.runtimeDirectory = first.root + "/run"
        second.supervisor.runtimeDirectory = first.root + "/run"
        // As if it had made `notify` itself, racing the first (which went on with it).
        second.supervisor.createdNotifyDirectory = true
        do {
            try second.supervisor.lockRuntimeDirectory(refuse: true)
            Issue.record("the second baton took the lock")
        } catch {
            #expect(error.reason == .runtimeInUse(pid: getpid()))
            #expect("\(error)".contains("in use by another baton (pid \(getpid())): two batons must not share a runtime directory"), "\(error)")
        }
        // A re-audit: the refused start removed the `notify` folder it had made first, which the
        // running baton went on with.
        #expect(!second.supervisor.createdNotifyDirectory)
    }

    /// A re-audit: `rm -rf` of the runtime directory, and a second baton started within the 5 s
    /// before the first looked again, took the lock unsaid (the first made the folders again
    /// and bound its sockets, no ERROR, no status line); `rm` of `.lock` alone left it unlocked.
    @Test func aLockAnotherBatonTookMeanwhileIsSaidAndARemovedOneTakenAgain() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let path = h.root + "/run/.lock"
        #expect(unlink(path) == 0)
        var other = try #require(try LockFile.take(path))
        h.supervisor.checkRuntimeFiles()
        let said = h.log.lines(containing: "the runtime directory's lock was lost while baton ran and cannot be taken again")
        #expect(said.count == 1 && said.allSatisfy { $0.contains("in use by another baton (pid \(getpid()))") }, "\(said)")
        #expect(h.supervisor.statusReport(memory: [:]).problems?.contains { $0.contains("lock was lost while baton ran") } == true)
        h.supervisor.checkRuntimeFiles()
        #expect(h.log.lines(containing: "lock was lost").count == 1, "said once")
        // The other baton goes (its lock and file with it, and the record it wrote over this
        // one's): taken again, and the record written again.
        h.host.files.remove(h.supervisor.instancePath)
        #expect(unlink(path) == 0)
        other = try #require(try LockFile.take(h.root + "/run/.other"))
        _ = other
        h.supervisor.checkRuntimeFiles()
        #expect(h.supervisor.takeOver.runtimeLock?.isStillAtItsPath == true)
        #expect(h.log.lines(containing: ".lock was removed or replaced while baton ran: locked again").count == 1)
        h.advance(by: .zero)
        let record = try #require(try? h.host.files.read(h.supervisor.instancePath), "the record written again")
        #expect(record.contains("\"pid\":\(getpid())"), "\(record)")
        #expect(h.supervisor.statusReport(memory: [:]).problems?.contains { $0.contains("lock was lost") } != true)
    }

    /// A re-audit: a symbolic link at `.lock` (in a directory its group may write in) made a
    /// root baton truncate the file it named and write its pid there.
    @Test func aLinkAtTheLockIsNeverFollowed() throws {
        let h = try DaemonHarness(workers: 1)
        let victim = h.root + "/victim.txt"
        let text = "precious content\n"
        #expect(FileManager.default.createFile(atPath: victim, contents: Data(text.utf8)))
        mkdir(h.root + "/run", 0o755)
        #expect(symlink(victim, h.root + "/run/.lock") == 0)
        #expect(throws: DirectoryError.self) { try h.start() }
        #expect(ProcFS.read(victim) == text)
    }

    /// The directory removed and made again: the lock is taken again on the new `.lock`, so a
    /// baton started since is refused too.
    @Test func theLockIsTakenAgainWhenTheDirectoryIsMadeAgain() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let run = h.root + "/run"
        for worker in h.supervisor.slots.compactMap(\.current) { if let path = worker.notifyPath { unlink(path) } }
        #expect(rmdir(h.supervisor.notifyDirectory) == 0)
        #expect(unlink(run + "/.lock") == 0)
        h.supervisor.checkRuntimeFiles()
        #expect(h.supervisor.takeOver.runtimeLock?.isStillAtItsPath == true)
        #expect(throws: LockFile.Failure.held(pid: getpid())) { _ = try LockFile.take(run + "/.lock") }
    }
}
