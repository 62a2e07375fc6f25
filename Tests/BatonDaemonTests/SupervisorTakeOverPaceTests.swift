import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// A take-over on a host short of memory, on the fake port: two orphans of 80 MiB, and a budget
/// with room for `room` more workers beside them.
@Suite struct SupervisorTakeOverPaceTests {
    static let mib: UInt64 = 1 << 20
    static let orphanPIDs: [pid_t] = [4_600_001, 4_600_002]

    /// Two slots of 80 MiB workers under `budget` (no reserve) on a host with memory to spare,
    /// and a runtime directory for the dead baton's record.
    static func harness(budget: UInt64) throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 2) { config in
            config.memory.budget = .bytes(budget)
            config.memory.reserve = 0
        }
        h.host.fakeMemory.worker = MemorySample(rss: 80 * Self.mib, pss: 80 * Self.mib, uss: 80 * Self.mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 16384 * Self.mib, committed: 1024 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        h.supervisor.runtimeDirectory = h.root + "/run"
        return h
    }

    /// Starts baton on the dead baton's record (its two orphans adopted); returns the harness
    /// and the most processes (orphans and new workers) that ran at once.
    func takeOver(budget: UInt64) throws -> (h: DaemonHarness, most: Int) {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }
        let address = try #require(Sockets.localAddress(socket.fd))
        let h = try Self.harness(budget: budget)
        let previous = InstanceRecord(
            app: "fake", pid: 4_600_000, startTime: 10, listeners: [.init(name: "http", address: address)],
            workers: Self.orphanPIDs.enumerated().map { .init(slot: $0.offset, pid: $0.element, startTime: 11) })
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        for (slot, pid) in Self.orphanPIDs.enumerated() {
            _ = h.host.addOrphan(pid: pid, slot: slot, descriptors: [3: socket.fd])
            h.host.fakeProcesses.setStartTime(11, of: pid)
        }
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        h.supervisor.takeOver.taken = [:]
        var most = 0
        h.host.onSpawn = { [unowned host = h.host] _ in most = max(most, host.children.filter(\.isRunning).count) }
        try h.start()
        for _ in 0..<30 where !(h.allReady && h.supervisor.takeOver.orphans.isEmpty) { h.advance(by: .seconds(1)) }
        return (h, most)
    }

    /// Found by a memory-pressure audit: after a SIGKILL of baton in a cgroup at 82–94 %, the
    /// next baton started every new worker beside the orphans, and the kernel killed orphans
    /// (all 4 at 94 %) while they were the only workers serving.
    @Test func noRoomReplacesTheOrphansOneAtATime() throws {
        let (h, most) = try takeOver(budget: 200 * Self.mib)
        #expect(h.allReady && h.supervisor.takeOver.orphans.isEmpty)
        #expect(most <= 2, "\(most) workers of 80 MiB at once in a budget for 2")
        #expect(h.supervisor.takeOver.pace == TakeOverPace(extra: 0))
    }

    @Test func roomForOneStartsOneBesideTheOrphans() throws {
        let (h, most) = try takeOver(budget: 300 * Self.mib)
        #expect(h.allReady && h.supervisor.takeOver.orphans.isEmpty)
        #expect(most == 3)
    }

    @Test func roomForAllStartsAllAtOnceAsBefore() throws {
        let (h, most) = try takeOver(budget: 2048 * Self.mib)
        #expect(h.allReady && h.supervisor.takeOver.orphans.isEmpty)
        #expect(most == 4)
        #expect(h.supervisor.takeOver.pace == nil)
    }

    /// Found by a crash audit: the dead baton had told one orphan to stop (a deploy's old
    /// worker), and the next baton's pace drained a serving orphan before it.
    @Test func anOrphanTheDeadBatonWasStoppingIsDrainedFirst() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }
        let address = try #require(Sockets.localAddress(socket.fd))
        let h = try Self.harness(budget: 260 * Self.mib)
        let pids: [pid_t] = [4_600_011, 4_600_012, 4_600_013]
        let previous = InstanceRecord(
            app: "fake", pid: 4_600_000, startTime: 10, listeners: [.init(name: "http", address: address)],
            workers: [
                .init(slot: 0, pid: pids[0], startTime: 11), .init(slot: 1, pid: pids[1], startTime: 11),
                .init(slot: 1, pid: pids[2], startTime: 11, draining: true),
            ])
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        let children = pids.enumerated().map { i, pid in h.host.addOrphan(pid: pid, slot: i == 0 ? 0 : 1, descriptors: [3: socket.fd]) }
        for pid in pids { h.host.fakeProcesses.setStartTime(11, of: pid) }
        // It drains slowly (it stays, told to stop), and no new worker gets ready: nothing else moves.
        children[2].ignoresStopSignal = true
        h.autoReady = { _ in false }
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        h.supervisor.takeOver.taken = [:]
        try h.start()
        #expect(h.supervisor.takeOver.pace == TakeOverPace(extra: 0))
        #expect(children[2].signals.first == SIGTERM, "the one already stopping goes first")
        #expect(children[0].signals.isEmpty && children[1].signals.isEmpty, "the serving ones serve on")
        h.supervisor.writeInstanceRecord()
        let record = try JSONDecoder().decode(InstanceRecord.self, from: Data(try #require(h.host.fakeFiles[h.supervisor.instancePath]).utf8))
        #expect(record.workers.filter { $0.draining == true }.map(\.pid) == [pids[2]], "its own record says so, for a baton after it")
    }
}
