import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// `instance.json` (the take-over record) through the port's files: written when the workers
/// change, removed at a clean stop (read at start-up: ProcessTablePortTests).
@Suite struct SupervisorInstanceRecordTests {
    @Test func theRecordListsTheLiveWorkersWithTheirStartTimes() throws {
        let h = try DaemonHarness(workers: 2)
        h.host.onSpawn = { [unowned processes = h.host.fakeProcesses] child in processes.setStartTime(UInt64(child.pid) + 7, of: child.pid) }
        try h.start()
        let path = h.root + "/run/instance.json"
        let text = try #require(h.host.fakeFiles[path], "written through the port")
        let record = try JSONDecoder().decode(InstanceRecord.self, from: Data(text.utf8))
        #expect(record.app == "fake" && record.pid == getpid())
        #expect(record.workers.map(\.pid) == h.servingPIDs.compactMap { $0 })
        #expect(record.workers.allSatisfy { $0.startTime == UInt64($0.pid) + 7 })
        #expect(h.host.fakeFiles.writes[path] == 1, "one write for the start-up's workers")
        h.supervisor.forgetInstance()
        #expect(h.host.fakeFiles[path] == nil)
    }

    /// A runtime directory that takes no write (full): the previous baton's record, already
    /// taken over, must not stay there naming the listening sockets this baton's workers now
    /// hold (a later baton took them for that dead baton's orphans). This baton's own record,
    /// once written, stays even when a later write fails: older, but still its own.
    @Test func aRecordThatCannotBeWrittenTakesThePreviousBatonsAwayButNotItsOwn() throws {
        let h = try DaemonHarness(workers: 2)
        let path = h.root + "/run/instance.json"
        let previous = InstanceRecord(app: "fake", pid: 4_242_424, startTime: 7, listeners: [], workers: [])
        h.host.fakeFiles[path] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        h.host.fakeFiles.replaceError = SystemError("write", errno: ENOSPC)
        try h.start()
        #expect(h.host.fakeFiles[path] == nil, "the previous baton's record is gone")

        h.host.fakeFiles.replaceError = nil
        h.host.child(try #require(h.servingPIDs[0]))?.end(.exited(1))
        h.advance(by: .zero)
        let own = try JSONDecoder().decode(InstanceRecord.self, from: Data(try #require(h.host.fakeFiles[path]).utf8))
        #expect(own.pid == getpid())

        h.host.fakeFiles.replaceError = SystemError("write", errno: ENOSPC)
        h.host.child(try #require(h.servingPIDs[1]))?.end(.exited(1))
        h.advance(by: .zero)
        let kept = try JSONDecoder().decode(InstanceRecord.self, from: Data(try #require(h.host.fakeFiles[path]).utf8))
        #expect(kept.pid == getpid(), "its own older record stays")
    }
}
