import BatonCore
import Testing

/// The recycling engine beside the rollout that runs its recycles (both pure, a fake clock): a
/// recycle's place in the budget is free once its slot's new worker serves and the old one
/// drained, while the new worker's stability window still runs, so a fast leak does not wait one
/// window per slot.
@Suite("RecyclingEngine and the rollout")
struct RecyclingEngineRolloutTests {
    /// Every slot's worker is pid 1000 + slot and still serves.
    private static func serving(_ slot: Int, _ pid: Int32) -> Bool { pid == Int32(1000 + slot) }

    /// An engine of budget 1 and 1 s spacing with slots 0 and 1 queued, slot 0 started at 10 s,
    /// and the rollout (surge, stability window awaited) that runs it, started.
    private func recyclingSlotZero() -> (RecyclingEngine, RollingRestart) {
        var engine = RecyclingEngine(concurrency: .fixed(1), spacing: .seconds(1))
        for slot in 0..<2 {
            _ = engine.submit(slot: slot, pid: Int32(1000 + slot), reason: .memoryThreshold, detail: "over", now: .seconds(slot))
        }
        let plan = engine.next(now: .seconds(10), blocked: false, autoWidth: 1, serving: Self.serving)
        #expect(plan.starts.map(\.slot) == [0])
        var rollout = RollingRestart(slots: [0], strategy: .surge, awaitsStability: true)
        #expect(rollout.start() == [.startNew(slot: 0)])
        return (engine, rollout)
    }

    @Test("the place is freed once the new worker serves and the old one drained, before the window passed")
    func freedBeforeTheWindow() {
        var (engine, rollout) = recyclingSlotZero()
        // 12 s: the new worker is ready and serves; the old one drains.
        #expect(rollout.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(engine.rolloutProgressed(rollout).isEmpty, "the old worker still drains")
        #expect(engine.next(now: .seconds(12), blocked: false, autoWidth: 1, serving: Self.serving).starts.isEmpty)
        // 12.5 s: drained. The window (ready + 2 s = 14 s) still runs.
        #expect(rollout.oldWorkerExited(slot: 0) == [])
        #expect(rollout.settlingSlots == [0])
        #expect(engine.rolloutProgressed(rollout).map(\.slot) == [0])
        #expect(engine.recycling.isEmpty)
        let plan = engine.next(now: .milliseconds(12_500), blocked: false, autoWidth: 1, serving: Self.serving)
        #expect(plan.starts.map(\.slot) == [1], "slot 1 starts inside slot 0's window")
        // The slot joins the rollout still running; slot 0 passes its window later.
        let joined = rollout.append(slot: 1)
        #expect(joined)
        #expect(rollout.replan(strategy: .surge, width: 1) == [.startNew(slot: 1)])
        #expect(rollout.workerStable(slot: 0) == [])
        #expect(engine.rolloutProgressed(rollout).isEmpty, "slot 1 is still starting")
    }

    @Test("freed once: a later look at the rollout frees nothing more, and a failure in the window still finds the recycle")
    func freedOnce() {
        var (engine, rollout) = recyclingSlotZero()
        _ = rollout.newWorkerReady(slot: 0)
        _ = rollout.oldWorkerExited(slot: 0)
        #expect(engine.rolloutProgressed(rollout).map(\.slot) == [0])
        #expect(engine.rolloutProgressed(rollout).isEmpty)
        #expect(engine.recycling.isEmpty && engine.settling.keys.sorted() == [0])
        // The new worker exits inside its window: the rollout fails, and the recycle with it
        // (its reason's cooldown applies), though its place was free already.
        #expect(rollout.newWorkerFailed(slot: 0, reason: "exited") == [.finished(.failed(slot: 0, reason: "exited", replaced: [0]))])
        #expect(engine.rolloutSettled(rollout).isEmpty, "it never passed its window")
        #expect(engine.finished(slot: 0)?.slot == 0)
        #expect(engine.finished(slot: 0) == nil && engine.settling.isEmpty)
        #expect(engine.queued.map(\.slot) == [1])
    }

    @Test("a freed recycle whose new worker passes its window has settled")
    func settlesAfterTheWindow() {
        var (engine, rollout) = recyclingSlotZero()
        _ = rollout.newWorkerReady(slot: 0)
        _ = rollout.oldWorkerExited(slot: 0)
        #expect(engine.rolloutProgressed(rollout).map(\.slot) == [0])
        #expect(engine.rolloutSettled(rollout).isEmpty, "the window still runs")
        #expect(rollout.workerStable(slot: 0) == [.finished(.succeeded)])
        #expect(engine.rolloutSettled(rollout).map(\.slot) == [0])
        #expect(engine.settling.isEmpty && engine.finished(slot: 0) == nil)
    }

    @Test("a slot queued again while its new worker settles waits for the window; the ones behind it start")
    func settlingSlotWaits() {
        var (engine, rollout) = recyclingSlotZero()
        _ = rollout.newWorkerReady(slot: 0)
        _ = rollout.oldWorkerExited(slot: 0)
        #expect(engine.rolloutProgressed(rollout).map(\.slot) == [0])
        // 12.5 s: slot 0's new worker (pid 2000) is over a limit at once, ahead of slot 1 by priority.
        #expect(engine.submit(slot: 0, pid: 2000, reason: .workerLimit, detail: "over", now: .milliseconds(12_500)) == .queued)
        let settling = Set(rollout.settlingSlots)
        let serving: (Int, Int32) -> Bool = { slot, pid in pid == (slot == 0 ? 2000 : 1001) }
        var plan = engine.next(now: .seconds(13), blocked: false, autoWidth: 1, settling: { settling.contains($0) }, serving: serving)
        #expect(plan.starts.map(\.slot) == [1] && plan.dropped.isEmpty)
        #expect(engine.queued.map(\.slot) == [0], "kept, not dropped")
        // 14 s: its window passed and slot 1's recycle ended (budget 1); the spacing (1 s since
        // 13 s) lets it start now.
        #expect(rollout.workerStable(slot: 0) == [.finished(.succeeded)])
        #expect(engine.finished(slot: 1)?.slot == 1)
        plan = engine.next(now: .seconds(14), blocked: false, autoWidth: 1, settling: { _ in false }, serving: serving)
        #expect(plan.starts.map(\.slot) == [0])
    }
}
