import BatonCore
@testable import BatonDaemon
import BatonSystem
import Testing

/// The memory rules while a slot has no serving worker that anyone replaces (a crash loop, a
/// worker killed while it started, in backoff). They exist to head off the OOM killer; a
/// memory-pressure audit saw one OOM kill chain into every slot in backoff, and the rules, which
/// waited for every slot to serve, order 2 restarts against 23 kills.
@Suite struct SupervisorPolicyWithADownSlotTests {
    static let mib: UInt64 = 1 << 20

    static func sample(uss: UInt64) -> MemorySample {
        MemorySample(rss: uss * mib, pss: uss * mib, uss: uss * mib)
    }

    /// Three workers of 40 MiB; slot 2's worker then crashes at every start (backoff 1 s, 2 s,
    /// 4 s, …). The memory rules check every second on fresh figures.
    private func harness(_ configure: @escaping (inout BatonConfig) -> Void) throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 3) {
            $0.memory.minWorkerAge = .seconds(10)
            $0.memory.checkInterval = .seconds(1)
            $0.memory.smapsEvery = 1
            $0.deploy.stabilityWindow = .zero
            configure(&$0)
        }
        h.host.fakeMemory.worker = Self.sample(uss: 40)
        try h.start()
        h.supervisor.startMemoryChecks()
        h.advance(by: .seconds(20))
        // Slot 2 crash-loops from now on.
        h.host.onSpawn = { child in if child.slot == 2 { child.end(.exited(1)) } }
        let crashing = try #require(h.servingPIDs[2])
        h.host.child(crashing)?.end(.exited(1))
        h.advance(by: .seconds(3))
        #expect(h.supervisor.slots[2].current?.state != .ready)
        return h
    }

    @Test("a worker past worker_limit is recycled while another slot crash-loops")
    func workerLimitWithACrashLoopingSlot() throws {
        let h = try harness { $0.memory.workerLimit = 100 * Self.mib }
        let bloated = try #require(h.servingPIDs[0])
        let other = try #require(h.servingPIDs[1])
        h.host.fakeMemory.setTree(Self.sample(uss: 150), of: bloated)
        h.advance(by: .seconds(5))
        h.finishOperations(limit: .seconds(10))
        #expect(h.servingPIDs[0] != bloated, "slot 0 must be recycled for worker_limit while slot 2 is down")
        #expect(h.supervisor.slots[0].lastRestartReason?.reason == .workerLimit)
        #expect(h.servingPIDs[1] == other, "slot 1 is not over anything")
    }

    @Test(
        "under replace, max_unavailable 1, the recycle beside a crash-looping slot finishes and a deploy after it runs",
        arguments: [DeployStrategy.replace, .auto])
    func replaceWithACrashLoopingSlot(strategy: DeployStrategy) throws {
        let h = try harness {
            $0.memory.workerLimit = 100 * Self.mib
            $0.deploy.strategy = strategy
            $0.deploy.maxUnavailable = 1
        }
        let bloated = try #require(h.servingPIDs[0])
        h.host.fakeMemory.setTree(Self.sample(uss: 150), of: bloated)
        h.advance(by: .seconds(5))
        h.finishOperations(limit: .seconds(30))
        #expect(h.servingPIDs[0] != bloated, "slot 0 must be recycled for worker_limit while slot 2 is down")
        let policy = h.supervisor.history.last { $0.kind == .policy }
        #expect(policy?.outcome == .succeeded, "\(h.supervisor.history.map { "\($0.kind) \($0.outcome) \($0.detail ?? "")" })")
        #expect(h.supervisor.operation == nil, "nothing may be left running")
    }

    @Test("the threshold recycles the largest grown worker while another slot crash-loops")
    func thresholdWithACrashLoopingSlot() throws {
        // 25 % of 1000 MiB: the line is 250 MiB; the two serving workers grow to 200 MiB together.
        let h = try harness {
            $0.memory.budget = .bytes(1000 * Self.mib)
            $0.memory.threshold = 0.25
        }
        let bloated = try #require(h.servingPIDs[0])
        h.host.fakeMemory.setTree(Self.sample(uss: 200), of: bloated)
        h.host.fakeMemory.setTree(Self.sample(uss: 90), of: try #require(h.servingPIDs[1]))
        h.advance(by: .seconds(5))
        h.finishOperations(limit: .seconds(10))
        #expect(h.servingPIDs[0] != bloated, "slot 0 must be recycled for the threshold while slot 2 is down")
        #expect(h.supervisor.slots[0].lastRestartReason?.reason == .memoryThreshold)
    }

    @Test("the memory rules never take the last serving worker while the others are down")
    func neverTheLastServingWorker() throws {
        let h = try harness { $0.memory.workerLimit = 100 * Self.mib }
        // Slot 1 crash-loops too: slot 0 is the only worker serving.
        h.host.onSpawn = { child in if child.slot == 1 || child.slot == 2 { child.end(.exited(1)) } }
        h.host.child(try #require(h.servingPIDs[1]))?.end(.exited(1))
        h.advance(by: .seconds(1))
        let last = try #require(h.servingPIDs[0])
        h.host.fakeMemory.setTree(Self.sample(uss: 150), of: last)
        h.advance(by: .seconds(5))
        #expect(h.servingPIDs[0] == last, "the only serving worker stays")
    }

    @Test("restarts by age still wait for every slot to serve")
    func ageWaitsForEverySlot() throws {
        let h = try harness {
            $0.rolling.maxAge = .seconds(30)
            $0.rolling.splay = .zero
        }
        let old = h.servingPIDs
        h.advance(by: .seconds(20))
        #expect(h.servingPIDs[0] == old[0] && h.servingPIDs[1] == old[1], "age is no emergency: \(old) -> \(h.servingPIDs)")
    }
}

/// A `[memory] budget` over the limit the kernel enforces (a careless operator's 16 GiB on a
/// 1000 MiB host): `threshold` × budget was never reached, so the threshold rules never fired
/// before the OOM killer did. The limit is the budget then, with a warning.
@Suite struct SupervisorBudgetOverTheLimitTests {
    static let mib: UInt64 = 1 << 20

    @Test func theThresholdFiresAgainstTheLimitWhenTheBudgetIsOverIt() throws {
        let h = try DaemonHarness(workers: 3) {
            $0.memory.budget = .bytes(16 * 1024 * Self.mib)
            $0.memory.threshold = 0.5
            $0.memory.minWorkerAge = .seconds(10)
            $0.memory.checkInterval = .seconds(1)
            $0.memory.smapsEvery = 1
            $0.deploy.stabilityWindow = .zero
        }
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 1000 * Self.mib, available: 300 * Self.mib, commitLimit: 2000 * Self.mib, committed: 700 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        h.host.fakeMemory.worker = MemorySample(rss: 100 * Self.mib, pss: 100 * Self.mib, uss: 100 * Self.mib)
        try h.start()
        h.supervisor.startMemoryChecks()
        h.advance(by: .seconds(20))
        let before = h.servingPIDs
        // 3 × 200 MiB: over half of the host's 1000 MiB, far under half of 16 GiB.
        let bloated = try #require(before[0])
        h.host.fakeMemory.setTree(MemorySample(rss: 250 * Self.mib, pss: 250 * Self.mib, uss: 250 * Self.mib), of: bloated)
        for pid in before.dropFirst().compactMap({ $0 }) {
            h.host.fakeMemory.setTree(MemorySample(rss: 150 * Self.mib, pss: 150 * Self.mib, uss: 150 * Self.mib), of: pid)
        }
        h.advance(by: .seconds(5))
        h.finishOperations(limit: .seconds(10))
        #expect(h.servingPIDs[0] != bloated, "the largest grown worker must be recycled for the threshold")
        #expect(h.supervisor.slots[0].lastRestartReason?.reason == .memoryThreshold)
        #expect(h.supervisor.memoryMonitor.saidBudgetOver == 16 * 1024 * Self.mib)
    }
}
