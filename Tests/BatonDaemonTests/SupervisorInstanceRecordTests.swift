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
}
