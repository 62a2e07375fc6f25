import BatonCore
import Testing

/// The restart policy under a recycling budget above 1 (`Settings.concurrency`).
@Suite("RestartPolicy concurrency")
struct RestartPolicyConcurrencyTests {
    private static let mib: UInt64 = 1 << 20

    /// Workers started at 0, all ready, with these PSS and USS (MiB).
    private static func workers(pss: [UInt64], uss: [UInt64]) -> [RestartPolicy.Worker] {
        zip(pss, uss).enumerated().map { slot, m in
            RestartPolicy.Worker(
                slot: slot, pid: Int32(100 + slot), startedAt: .zero, memory: MemorySample(rss: 2 * m.0 * mib, pss: m.0 * mib, uss: m.1 * mib))
        }
    }

    private static func policy(workers: Int, concurrency: Int, workerLimit: UInt64? = nil) -> RestartPolicy {
        var s = RestartPolicy.Settings(
            workers: workers, threshold: 0.5, workerLimit: workerLimit, minWorkerAge: .seconds(10), checkInterval: .seconds(1))
        s.concurrency = concurrency
        return RestartPolicy(settings: s)
    }

    private static func tick(_ workers: [RestartPolicy.Worker], at seconds: Int = 60, settling: Set<Int> = []) -> RestartPolicy.Tick {
        RestartPolicy.Tick(
            now: .seconds(seconds), workers: workers, budget: EffectiveBudget(bytes: 1000 * mib, source: .memTotal), settling: settling)
    }

    @Test func theDefaultOfOneNeverOrdersTwoAtOnce() {
        var p = Self.policy(workers: 3, concurrency: 1, workerLimit: 50 * Self.mib)
        let w = Self.workers(pss: [100, 100, 100], uss: [80, 90, 70])
        #expect(p.tick(Self.tick(w))?.slot == 1)
        #expect(p.tick(Self.tick(w)) == nil)
        p.replacementFinished(slot: 1, now: .seconds(61))
        // Slot 1's new worker is small; slot 0 is next.
        let after = Self.workers(pss: [100, 100, 100], uss: [80, 30, 70])
        #expect(p.tick(Self.tick(after, at: 62))?.slot == 0)
    }

    @Test func workerLimitOrdersUpToTheBudgetNeverTheSameSlotTwice() {
        var p = Self.policy(workers: 4, concurrency: 2, workerLimit: 50 * Self.mib)
        let w = Self.workers(pss: [60, 60, 60, 60], uss: [80, 90, 70, 40])
        #expect(p.tick(Self.tick(w))?.slot == 1)
        #expect(p.tick(Self.tick(w))?.slot == 0)
        // The budget is used: slot 2 (over its limit too) waits for one to end.
        #expect(p.tick(Self.tick(w)) == nil)
        #expect(p.replacing.keys.sorted() == [0, 1])
        #expect(p.state == .replacing(slot: 0, since: .seconds(60)))
        p.replacementFailed(slot: 0, now: .seconds(61))
        #expect(p.tick(Self.tick(w, at: 62))?.slot == 2)
        p.replacementFinished(slot: 1, now: .seconds(63))
        p.replacementFinished(slot: 2, now: .seconds(63))
        #expect(p.state == .idle)
    }

    @Test func theThresholdOrdersASecondOnlyWhenTheFirstIsNotEnough() {
        // Line: 50% of 1000 MiB = 500 MiB.
        var p = Self.policy(workers: 4, concurrency: 3)
        // 560 MiB: replacing the largest (200 MiB PSS) brings it to 360: one is enough.
        let enough = Self.workers(pss: [200, 120, 120, 120], uss: [180, 100, 100, 100])
        #expect(p.tick(Self.tick(enough))?.reason == .memoryThreshold)
        #expect(p.tick(Self.tick(enough)) == nil)
        // 800 MiB: without the first (200) it is 600, still over: a second goes; without both, 400: no third.
        var q = Self.policy(workers: 4, concurrency: 3)
        let far = Self.workers(pss: [200, 200, 200, 200], uss: [190, 180, 170, 160])
        #expect(q.tick(Self.tick(far))?.slot == 0)
        #expect(q.tick(Self.tick(far))?.slot == 1)
        #expect(q.tick(Self.tick(far)) == nil)
    }

    /// Under `strategy = "replace"` a slot being replaced has no serving worker until its new one
    /// is ready: that gap is the budget's (at most `concurrency` at once), not a missing worker.
    /// A second order may come during it; a slot with a worker starting that nobody replaces (a
    /// crash's restart) still holds everything back.
    @Test func aSlotInItsReplaceGapDoesNotHoldTheNextOrderBack() {
        var p = Self.policy(workers: 4, concurrency: 2, workerLimit: 50 * Self.mib)
        let w = Self.workers(pss: [60, 60, 60, 60], uss: [80, 90, 40, 40])
        #expect(p.tick(Self.tick(w))?.slot == 1)
        // Slot 1's old worker drained; its new one is not ready yet.
        let gap = w.filter { $0.slot != 1 }
        #expect(p.tick(Self.tick(gap, at: 61))?.slot == 0)
        p.replacementFinished(slot: 0, now: .seconds(62))
        p.replacementFinished(slot: 1, now: .seconds(62))
        // Slot 3's worker crashed and its next one starts (not being replaced): slot 2 over its
        // limit waits.
        var grown = w
        grown[0].memory?.uss = 30 * Self.mib
        grown[1].memory?.uss = 30 * Self.mib
        grown[2].memory?.uss = 90 * Self.mib
        grown[3].ready = false
        #expect(p.tick(Self.tick(grown, at: 63)) == nil)
        grown[3].ready = true
        #expect(p.tick(Self.tick(grown, at: 64))?.slot == 2)
    }

    /// A replacement that serves frees the budget while its new worker's stability window runs;
    /// when that worker dies in the window, the slot still gets the `min_worker_age` cooldown.
    @Test func aReplacementThatFailsInItsWindowCoolsDownAfterServing() {
        var p = Self.policy(workers: 2, concurrency: 1, workerLimit: 50 * Self.mib)
        let w = Self.workers(pss: [100, 100], uss: [80, 70])
        #expect(p.tick(Self.tick(w))?.slot == 0)
        #expect(p.tick(Self.tick(w, at: 61)) == nil, "one at a time while slot 0's replacement does not serve")
        // Slot 0's recycle serves, its new worker in its window: the engine's settling slots.
        #expect(p.tick(Self.tick(w, at: 61, settling: [0]))?.slot == 1, "the budget is free while slot 0 settles")
        #expect(p.replacing.keys.sorted() == [0, 1], "slot 0's order has not ended")
        #expect(p.tick(Self.tick(w, at: 61, settling: [0])) == nil, "one at a time; slot 0 is not picked while it settles")
        p.replacementFailed(slot: 0, now: .seconds(62))
        p.replacementFinished(slot: 1, now: .seconds(62))
        // Slot 1's new worker is small; slot 0 still runs a worker over the limit.
        let after = Self.workers(pss: [100, 100], uss: [80, 30])
        #expect(p.tick(Self.tick(after, at: 63)) == nil, "slot 0 cools down for min_worker_age (10 s)")
        #expect(p.replacing.isEmpty)
        #expect(p.tick(Self.tick(after, at: 73))?.slot == 0)
    }

    /// The threshold rules take one view of the replacements in flight. A slot whose recycle
    /// serves and settles in its window runs its new worker: its memory stays (it is not coming
    /// back) and its growth counts like any other worker's. The prediction used to leave a
    /// settling slot's growth out while the threshold counted its memory as staying, so a new
    /// worker leaking in its window went unseen until the total crossed the line.
    @Test func aSettlingSlotsNewWorkerGrowsLikeAnyOther() {
        var p = Self.policy(workers: 2, concurrency: 1)
        // 550 MiB, over the 500 MiB line: slot 0 (the largest USS) goes.
        #expect(p.tick(Self.tick(Self.workers(pss: [300, 250], uss: [280, 240])))?.reason == .memoryThreshold)
        // Slot 0's recycle serves, its new worker in its window, growing 15 MiB/s since its start
        // at 55 s; slot 1 is flat. 450 MiB now, past the line within the next check plus a boot
        // (5 s): slot 1 goes, the only one that may.
        var workers = Self.workers(pss: [100, 350], uss: [90, 330])
        workers[0].startedAt = .seconds(55)
        for t in 56...61 { workers[0].history.append(MemoryPoint(at: .seconds(t), bytes: (90 - 15 * UInt64(61 - t)) * Self.mib)) }
        let tick = RestartPolicy.Tick(
            now: .seconds(61), workers: workers, budget: EffectiveBudget(bytes: 1000 * Self.mib, source: .memTotal), bootTime: .seconds(4),
            settling: [0])
        let decision = p.tick(tick)
        #expect(decision?.slot == 1 && decision?.reason == .leakPrediction, "\(String(describing: decision))")
    }
}
