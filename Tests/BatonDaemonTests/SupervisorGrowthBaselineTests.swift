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

    /// One worker started on a tree of `uss` MiB, and its harness.
    private func oneWorker(at uss: UInt64) throws -> (DaemonHarness, Worker) {
        let h = try DaemonHarness(workers: 1)
        h.host.fakeMemory.worker = Self.sample(uss: uss)
        try h.start()
        return (h, try #require(h.supervisor.slots.first?.current))
    }

    /// The tree reads `uss` MiB from now on, and one footprint sample interval passes.
    private func reading(_ uss: UInt64, in h: DaemonHarness) {
        h.host.fakeMemory.worker = Self.sample(uss: uss)
        h.advance(by: FootprintTracker.sampleInterval)
    }

    @Test("readings of a worker still starting are not growth")
    func bootReadingsAreNotHistory() throws {
        let h = try DaemonHarness(workers: 1)
        h.autoReady = { _ in false }
        h.host.fakeMemory.worker = Self.sample(uss: 5)
        try h.start()
        let worker = try #require(h.supervisor.slots.first?.current)
        #expect(worker.state == .starting)
        h.measure()
        h.host.fakeMemory.worker = Self.sample(uss: 30)
        h.advance(by: .seconds(1))
        h.measure()
        #expect(worker.history.count == 0, "\(worker.history.samples)")
        #expect(worker.memory?.uss == 30 * Self.mib)
    }

    @Test("the baseline and the history restart from the settled tree, not from the lone master at ready")
    func historyStartsAtTheSettledTree() throws {
        let (h, worker) = try oneWorker(at: 10)
        #expect(worker.state == .ready)
        // The server forks its workers after READY=1: the tree grows, then holds still.
        h.host.fakeMemory.setMembers([worker.pid, 90_001, 90_002], of: worker.pid)
        h.host.fakeMemory.worker = Self.sample(uss: 50)
        // Samples every second until a few in a row agree.
        h.advance(by: FootprintTracker.sampleInterval * 20)
        #expect(worker.ussAtReady == 50 * Self.mib)
        #expect(worker.history.samples.map(\.bytes).allSatisfy { $0 == 50 * Self.mib }, "\(worker.history.samples)")
        #expect(worker.history.count >= 1)
    }

    /// The recycling bench (baton+gunicorn, `--preload -w 1`, 8 KiB leaked a request) after the
    /// threshold rules began to replace only grown workers: 18 recycles and a 492 MiB peak, against
    /// 25 and 425 MiB before. The master's USS at READY=1 holds the app; the worker it forks next
    /// shares those pages, so the tree's USS falls by about the app's size, and under the leak the
    /// tree never settles: counted from ready, a worker had to leak ~60 MiB to count as grown.
    @Test("a tree whose USS falls after ready and never settles grows from its lowest reading")
    func growthCountsFromTheLowestReading() throws {
        let (h, worker) = try oneWorker(at: 60)
        #expect(worker.ussAtReady == 60 * Self.mib)
        // Forked: 40 MiB private, then the leak, a few MiB between samples (never settles).
        for uss: UInt64 in [40, 43, 46, 49] {
            reading(uss, in: h)
            h.measure()
        }
        #expect(worker.ussAtReady == 40 * Self.mib)
        let record = RestartPolicy.Worker(slot: 0, pid: worker.pid, startedAt: .zero, memory: worker.memory, ussAtReady: worker.ussAtReady)
        #expect(record.hasGrown)
    }

    /// A memory audit (gunicorn, puma, mold workers under load with a leak): a tree whose pids
    /// never change settles too while it leaks (its samples agree within the tolerance), and
    /// the baseline jumped to the leaked size (3.1, 0.9, 0.1 and 22.2 MiB became 87 to 93 MiB,
    /// the USS then): growth since ready was forgotten.
    @Test("a tree that settles while it leaks keeps the baseline its pids had first")
    func aTreeThatSettlesWhileItLeaksKeepsItsBaseline() throws {
        let (h, worker) = try oneWorker(at: 100)
        #expect(worker.ussAtReady == 100 * Self.mib)
        // 1 MiB more each second: within the tracker's tolerance (2 %), so the tree settles.
        for uss: UInt64 in 101...106 { reading(uss, in: h) }
        #expect(!h.supervisor.memoryMonitor.footprints.isSettling(pid: worker.pid), "settled")
        #expect(worker.ussAtReady == 100 * Self.mib, "\((worker.ussAtReady ?? 0) >> 20) MiB")
        // After a fork, the new tree's first reading is the baseline.
        let (h2, forking) = try oneWorker(at: 10)
        h2.host.fakeMemory.setMembers([forking.pid, 90_001], of: forking.pid)
        for uss: UInt64 in 100...105 { reading(uss, in: h2) }
        #expect(!h2.supervisor.memoryMonitor.footprints.isSettling(pid: forking.pid), "settled")
        #expect(forking.ussAtReady == 100 * Self.mib, "\((forking.ussAtReady ?? 0) >> 20) MiB")
    }
}
