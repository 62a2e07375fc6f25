import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// A leak of megabytes a second between two detailed reads (`smaps_every` checks apart).
@Suite struct SupervisorFastLeakTests {
    static let mib: UInt64 = 1 << 20

    static func sample(_ mib: UInt64) -> MemorySample { MemorySample(rss: mib * Self.mib, pss: mib * Self.mib, uss: mib * Self.mib) }

    /// An apps audit: a worker leaking 100 MB/s was replaced only at the next detailed tick
    /// (`smaps_every` = 6 checks), at 100 % of the budget where the line was 90 %: the cheap
    /// ticks between saw its RSS grow and looked at the PSS of the last detailed read.
    @Test func aFastLeakIsMeasuredAtTheNextCheck() throws {
        let h = try DaemonHarness(workers: 2) {
            $0.memory.budget = .bytes(1000 * Self.mib)
            $0.memory.threshold = 0.5
            $0.memory.minWorkerAge = .seconds(5)
            $0.memory.checkInterval = .seconds(1)
            $0.memory.smapsEvery = 6
            $0.deploy.stabilityWindow = .zero
        }
        h.host.fakeMemory.worker = Self.sample(100)
        try h.start()
        h.supervisor.startMemoryChecks()
        h.advance(by: .seconds(20))
        let leaking = try #require(h.servingPIDs[0])
        // Just after a detailed read: the next is 6 checks away.
        let reads = h.host.fakeMemory.detailedReads(of: leaking)
        for _ in 0..<7 where h.host.fakeMemory.detailedReads(of: leaking) == reads { h.advance(by: .seconds(1)) }
        try #require(h.host.fakeMemory.detailedReads(of: leaking) > reads)
        h.host.fakeMemory.setTree(Self.sample(600), of: leaking)
        h.advance(by: .milliseconds(2500))
        #expect(
            h.servingPIDs[0] != leaking || h.supervisor.operation?.kind == .policy,
            "not ordered at the cheap checks: \(h.supervisor.history.map { "\($0.kind) \($0.outcome)" })")
        h.finishOperations(limit: .seconds(10))
        #expect(h.supervisor.slots[0].lastRestartReason?.reason == .memoryThreshold)
        #expect(h.servingPIDs[1] != nil)
    }
}
