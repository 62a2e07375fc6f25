import BatonCore
@testable import BatonDaemon
import BatonSystem
import Testing

private let mib: UInt64 = 1 << 20

/// The memory policy's `min_worker_age` cooldown after a recycle that failed, on the fake host:
/// a recycle's place in the budget is freed once its new worker serves, before its stability
/// window passed, and a new worker that dies inside that window must still leave its slot alone.
@Suite("Supervisor recycle cooldown")
struct SupervisorRecycleCooldownTests {
    /// Two workers, a 100 MiB `worker_limit`, `min_worker_age` 60 s, a 2 s stability window.
    private func harness() throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 2) {
            $0.memory.workerLimit = 100 * mib
            $0.memory.minWorkerAge = .seconds(60)
            $0.memory.checkInterval = .seconds(5)
        }
        try h.start()
        return h
    }

    /// A check on made-up figures: slot 0's serving worker is over the limit, slot 1's is not,
    /// both old enough for the memory rules.
    private func tick(_ h: DaemonHarness) -> RestartPolicy.Decision? {
        let workers = h.supervisor.slots.map { slot in
            let uss = (slot.index == 0 ? 200 : 50) * mib
            return RestartPolicy.Worker(
                slot: slot.index, pid: slot.current?.pid ?? 0, startedAt: .zero, ready: slot.current?.state == .ready,
                memory: MemorySample(rss: uss, pss: uss, uss: uss))
        }
        return h.supervisor.memoryMonitor.policy.tick(
            RestartPolicy.Tick(now: h.clock.now, workers: workers, budget: EffectiveBudget(bytes: 10_000 * mib, source: .configured)))
    }

    @Test("a new worker that dies inside its stability window after its place was freed leaves the slot alone for min_worker_age")
    func diesInTheWindowCoolsDown() throws {
        let h = try harness()
        h.advance(by: .seconds(120))
        // The policy orders slot 0's recycle, as its check would.
        let order = tick(h)
        #expect(order?.slot == 0 && order?.reason == .workerLimit, "\(String(describing: order))")
        h.requestPolicyRestart(slot: 0, reason: .workerLimit)
        let old = h.servingPIDs[0]!
        // The new worker becomes ready, the old one drains: the recycle's place is freed.
        h.advance(by: .milliseconds(100))
        let new = try #require(h.servingPIDs[0])
        #expect(new != old)
        #expect(h.supervisor.recycling.recycling.isEmpty, "the place is free while the window runs")
        #expect(h.supervisor.operation?.kind == .policy, "the window still holds the operation")
        // Inside its window, the new worker dies: the recycle failed.
        h.host.child(new)?.end(.exited(70))
        h.finishOperations()
        h.advance(by: .seconds(1))
        #expect(h.allReady)
        // A check finds slot 0 over the limit again: it is cooling down, so nothing is ordered.
        #expect(tick(h) == nil, "slot 0 must be left alone for min_worker_age after its recycle failed")
        h.advance(by: .seconds(61))
        #expect(tick(h)?.slot == 0, "after min_worker_age it may be recycled again")
    }

    @Test("while a recycled slot's new worker is in its window, the policy's next check orders the next slot: the engine's settling slots reach the policy")
    func aSettlingRecycleFreesThePolicysBudget() throws {
        let h = try DaemonHarness(workers: 2) {
            $0.rolling.maxAge = .seconds(100)
            $0.rolling.splay = .zero
            $0.rolling.recycleConcurrency = .fixed(1)
            $0.memory.checkInterval = .seconds(5)
            $0.deploy.stabilityWindow = .seconds(60)
        }
        try h.start()
        h.supervisor.startMemoryChecks()
        let old = h.servingPIDs
        // Both pass max_age at 100 s; the check then orders one of them (the budget is 1).
        h.advance(by: .seconds(101))
        #expect(h.servingPIDs[0] != old[0] && h.servingPIDs[1] == old[1], "\(old) -> \(h.servingPIDs)")
        #expect(h.supervisor.recycling.recycling.isEmpty && h.supervisor.recycling.settling.keys.sorted() == [0])
        #expect(h.supervisor.memoryMonitor.policy.replacing.keys.sorted() == [0], "slot 0's order has not ended")
        // The next check (105 s): slot 0's window runs until 160 s, yet its order no longer
        // counts against the budget, so slot 1 goes now.
        h.advance(by: .seconds(5))
        #expect(h.servingPIDs[1] != old[1], "slot 1 must be recycled while slot 0 settles")
    }
}
