import BatonCore
@testable import BatonDaemon
import BatonSystem
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
}
