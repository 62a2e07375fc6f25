import BatonCore
@testable import BatonDaemon
import BatonSystem
import Testing

/// A worker's private-memory growth (the leak rate, LEAK/h) counts from its first settled
/// reading: not from readings taken while it boots, nor from the lone master a forking server
/// is at READY=1 before its workers exist.
@Suite struct SupervisorGrowthBaselineTests {
    static let mib: UInt64 = 1 << 20

    static func sample(uss: UInt64) -> MemorySample {
        MemorySample(rss: 2 * uss * mib, pss: uss * mib, uss: uss * mib, shared: uss * mib)
    }

    @Test("readings of a worker still starting are not growth")
    func bootReadingsAreNotHistory() throws {
        let h = try DaemonHarness(workers: 1)
        h.autoReady = { _ in false }
        h.host.fakeMemory.worker = Self.sample(uss: 5)
        try h.start()
        let worker = try #require(h.supervisor.slots.first?.current)
        #expect(worker.state == .starting)
        h.supervisor.sample(detailed: true)
        h.host.fakeMemory.worker = Self.sample(uss: 30)
        h.advance(by: .seconds(1))
        h.supervisor.sample(detailed: true)
        #expect(worker.history.count == 0, "\(worker.history.samples)")
        #expect(worker.memory?.uss == 30 * Self.mib)
    }

    @Test("the baseline and the history restart from the settled tree, not from the lone master at ready")
    func historyStartsAtTheSettledTree() throws {
        let h = try DaemonHarness(workers: 1)
        h.host.fakeMemory.worker = Self.sample(uss: 10)
        try h.start()
        let worker = try #require(h.supervisor.slots.first?.current)
        #expect(worker.state == .ready)
        // The server forks its workers after READY=1: the tree grows, then holds still.
        h.host.fakeMemory.worker = Self.sample(uss: 50)
        // Samples every second until a few in a row agree.
        h.advance(by: FootprintTracker.sampleInterval * 20)
        #expect(worker.ussAtReady == 50 * Self.mib)
        #expect(worker.history.samples.map(\.bytes).allSatisfy { $0 == 50 * Self.mib }, "\(worker.history.samples)")
        #expect(worker.history.count >= 1)
    }
}
