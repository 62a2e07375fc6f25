import BatonCore
import Testing

@Suite("RecyclingEngine")
struct RecyclingEngineTests {
    /// Every slot's worker is pid 1000 + slot and still serves.
    private static func serving(_ slot: Int, _ pid: Int32) -> Bool { pid == Int32(1000 + slot) }

    private func submit(_ e: inout RecyclingEngine, _ slot: Int, _ reason: RestartReason, at seconds: Int) -> RecyclingEngine.Submission {
        e.submit(slot: slot, pid: Int32(1000 + slot), reason: reason, detail: "\(reason.rawValue) \(slot)", now: .seconds(seconds))
    }

    private func next(_ e: inout RecyclingEngine, at now: Duration, blocked: Bool = false, autoWidth: Int = 1) -> RecyclingEngine.Plan {
        e.next(now: now, blocked: blocked, autoWidth: autoWidth, serving: Self.serving)
    }

    @Test func prioritiesRankOOMAndWorkerLimitFirstAndAgeLast() {
        let order: [RestartReason] = [.oom, .memoryThreshold, .leakPrediction, .maxRequests, .age]
        let ranks = order.map(RecyclingEngine.priority)
        #expect(ranks == ranks.sorted(by: >))
        #expect(Set(ranks).count == ranks.count)
        #expect(RecyclingEngine.priority(.workerLimit) == RecyclingEngine.priority(.oom))
    }

    @Test func theQueueStartsByPriorityThenBySubmission() {
        var e = RecyclingEngine(concurrency: .fixed(5), spacing: .zero)
        _ = submit(&e, 0, .age, at: 1)
        _ = submit(&e, 1, .maxRequests, at: 2)
        _ = submit(&e, 2, .leakPrediction, at: 3)
        _ = submit(&e, 3, .memoryThreshold, at: 4)
        _ = submit(&e, 4, .oom, at: 5)
        _ = submit(&e, 5, .workerLimit, at: 6)
        _ = submit(&e, 6, .maxRequests, at: 7)
        #expect(e.queued.map(\.slot) == [4, 5, 3, 2, 1, 6, 0])
        let plan = next(&e, at: .seconds(10))
        #expect(plan.starts.map(\.slot) == [4, 5, 3, 2, 1])
        #expect(Set(e.recycling.keys) == [4, 5, 3, 2, 1])
        #expect(e.queued.map(\.slot) == [6, 0])
        #expect(plan.wakeAt == nil)
    }

    /// A policy audit: across `baton upgrade` two recycles started 2.5 s apart with
    /// `recycle_spacing` 8 s: the new image's engine knew no last start.
    @Test func aResumedLastStartKeepsTheSpacing() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .seconds(8))
        e.resume(lastStart: .seconds(100))
        _ = submit(&e, 0, .age, at: 101)
        let early = next(&e, at: .seconds(102))
        #expect(early.starts.isEmpty && early.wakeAt == .seconds(108))
        #expect(next(&e, at: .seconds(108)).starts.map(\.slot) == [0])
    }

    @Test func theBudgetBoundsRecyclesAtOnceAndAFinishedOneFreesItsPlace() {
        var e = RecyclingEngine(concurrency: .fixed(2), spacing: .zero)
        for slot in 0..<4 { _ = submit(&e, slot, .memoryThreshold, at: slot) }
        #expect(next(&e, at: .seconds(10)).starts.map(\.slot) == [0, 1])
        #expect(next(&e, at: .seconds(11)).starts.isEmpty)
        #expect(e.finished(slot: 1)?.slot == 1)
        #expect(e.finished(slot: 1) == nil)
        #expect(next(&e, at: .seconds(12)).starts.map(\.slot) == [2])
        #expect(next(&e, at: .seconds(13)).starts.isEmpty)
        e.finished(slot: 0)
        e.finished(slot: 2)
        #expect(next(&e, at: .seconds(14)).starts.map(\.slot) == [3])
    }

    @Test func autoTakesThePlannersWidthAtLeastOne() {
        var e = RecyclingEngine(concurrency: .auto, spacing: .zero)
        #expect(e.budget(autoWidth: 0) == 1)
        #expect(e.budget(autoWidth: 3) == 3)
        for slot in 0..<4 { _ = submit(&e, slot, .maxRequests, at: slot) }
        #expect(next(&e, at: .seconds(10), autoWidth: 3).starts.count == 3)
        // Memory got tight: the width shrank below what runs; nothing more starts.
        e.finished(slot: 0)
        #expect(next(&e, at: .seconds(11), autoWidth: 1).starts.isEmpty)
        #expect(RecyclingEngine(concurrency: .fixed(0), spacing: .zero).budget(autoWidth: 9) == 1)
        #expect(RecyclingEngine(concurrency: .fixed(4), spacing: .zero).budget(autoWidth: 1) == 4)
    }

    @Test func theSpacingKeepsStartsApartAndSaysWhenToAskAgain() {
        var e = RecyclingEngine(concurrency: .fixed(3), spacing: .seconds(2))
        for slot in 0..<3 { _ = submit(&e, slot, .workerLimit, at: 0) }
        let first = next(&e, at: .seconds(10))
        #expect(first.starts.map(\.slot) == [0])
        #expect(first.wakeAt == .seconds(12))
        let early = next(&e, at: .milliseconds(11_999))
        #expect(early.starts.isEmpty)
        #expect(early.wakeAt == .seconds(12))
        let second = next(&e, at: .seconds(12))
        #expect(second.starts.map(\.slot) == [1])
        #expect(second.wakeAt == .seconds(14))
        #expect(next(&e, at: .seconds(14)).starts.map(\.slot) == [2])
        // Nothing queued: no wake-up.
        #expect(next(&e, at: .seconds(20)).wakeAt == nil)
    }

    @Test func theSpacingAlsoHoldsAfterARecycleEnded() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .seconds(5))
        _ = submit(&e, 0, .age, at: 0)
        _ = submit(&e, 1, .age, at: 0)
        #expect(next(&e, at: .seconds(10)).starts.map(\.slot) == [0])
        // The budget is full: no wake-up, the end of the recycle is the event.
        #expect(next(&e, at: .seconds(11)).wakeAt == nil)
        e.finished(slot: 0)
        let held = next(&e, at: .seconds(12))
        #expect(held.starts.isEmpty)
        #expect(held.wakeAt == .seconds(15))
        #expect(next(&e, at: .seconds(15)).starts.map(\.slot) == [1])
    }

    @Test func aSlotRecyclingIsNotQueuedAgainAndAQueuedOneIsUpgraded() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .zero)
        #expect(submit(&e, 0, .maxRequests, at: 1) == .queued)
        #expect(submit(&e, 1, .age, at: 2) == .queued)
        #expect(next(&e, at: .seconds(3)).starts.map(\.slot) == [0])
        #expect(submit(&e, 0, .oom, at: 4) == .alreadyRecycling)
        #expect(submit(&e, 1, .age, at: 5) == .alreadyQueued)
        #expect(submit(&e, 1, .maxRequests, at: 6) == .upgraded(from: .age))
        #expect(submit(&e, 1, .leakPrediction, at: 7) == .upgraded(from: .maxRequests))
        #expect(submit(&e, 1, .maxRequests, at: 8) == .alreadyQueued)
        #expect(e.queued.count == 1)
        #expect(e.queued.first?.reason == .leakPrediction)
        // The upgrade keeps its time in the queue.
        #expect(e.queued.first?.since == .seconds(2))
        #expect(e.queued.first?.detail == "leak-prediction 1")
    }

    @Test func anUpgradeMovesTheCandidateAheadOfLowerPriorities() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .zero)
        _ = submit(&e, 0, .maxRequests, at: 1)
        _ = submit(&e, 1, .maxRequests, at: 2)
        _ = submit(&e, 2, .age, at: 3)
        #expect(submit(&e, 2, .workerLimit, at: 4) == .upgraded(from: .age))
        #expect(e.queued.map(\.slot) == [2, 0, 1])
    }

    @Test func nothingStartsWhileBlockedAndTheQueueResumesAfter() {
        var e = RecyclingEngine(concurrency: .fixed(2), spacing: .seconds(1))
        _ = submit(&e, 0, .oom, at: 1)
        _ = submit(&e, 1, .age, at: 1)
        let blocked = next(&e, at: .seconds(2), blocked: true)
        #expect(blocked == RecyclingEngine.Plan())
        #expect(e.queued.count == 2)
        #expect(e.lastStart == nil)
        #expect(next(&e, at: .seconds(60)).starts.map(\.slot) == [0])
    }

    @Test func aCandidateWhoseWorkerNoLongerServesIsDropped() {
        var e = RecyclingEngine(concurrency: .fixed(2), spacing: .zero)
        _ = submit(&e, 0, .memoryThreshold, at: 1)
        _ = submit(&e, 1, .maxRequests, at: 2)
        // A deploy replaced slot 0's worker while the candidate waited.
        let plan = e.next(now: .seconds(3), blocked: false, autoWidth: 1) { slot, pid in slot != 0 && pid == Int32(1000 + slot) }
        #expect(plan.dropped.map(\.slot) == [0])
        #expect(plan.starts.map(\.slot) == [1])
        #expect(e.recycling[0] == nil)
    }

    @Test func aNewWorkerInAQueuedSlotReplacesTheStaleEntry() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .zero)
        #expect(e.submit(slot: 0, pid: 1, reason: .oom, detail: "old", now: .seconds(1)) == .queued)
        #expect(e.submit(slot: 0, pid: 2, reason: .age, detail: "new", now: .seconds(2)) == .queued)
        #expect(e.queued == [RecyclingEngine.Candidate(slot: 0, pid: 2, reason: .age, detail: "new", since: .seconds(2))])
    }

    @Test func withdrawTakesAQueuedSlotOutAndHoldsSaysWhatIsKnown() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .zero)
        _ = submit(&e, 0, .age, at: 1)
        _ = submit(&e, 1, .age, at: 1)
        _ = next(&e, at: .seconds(2))
        #expect(e.holds(slot: 0) && e.holds(slot: 1) && !e.holds(slot: 2))
        #expect(e.withdraw(slot: 1)?.slot == 1)
        #expect(e.withdraw(slot: 0) == nil)
        #expect(!e.holds(slot: 1))
    }

    @Test func reconfigureKeepsTheStateAndBoundsTheSettings() {
        var e = RecyclingEngine(concurrency: .fixed(1), spacing: .seconds(1))
        _ = submit(&e, 0, .age, at: 1)
        _ = submit(&e, 1, .age, at: 1)
        _ = next(&e, at: .seconds(2))
        e.reconfigure(concurrency: .fixed(-3), spacing: .seconds(-1))
        #expect(e.concurrency == .fixed(1))
        #expect(e.spacing == .zero)
        e.reconfigure(concurrency: .fixed(2), spacing: .zero)
        #expect(next(&e, at: .seconds(2)).starts.map(\.slot) == [1])
    }
}
