import BatonCore
import Testing

/// The machine driven step by step through its public API: a canary beside a second surge
/// slot, wrong and duplicate events, abort, an empty rollout, the surge width's floor.
extension RollingRestartTests {
    @Test func surgeOfTwoWithACanary() {
        var r = RollingRestart(slots: [0, 1, 2, 3], strategy: .surge, maxSurge: 2, canary: true)
        // Slot 1 boots beside its old worker while the canary does; neither waits for the other.
        #expect(r.start() == [.startNew(slot: 0), .startNew(slot: 1)])
        #expect(r.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(r.oldWorkerExited(slot: 0) == [.startNew(slot: 2)])
        #expect(r.inFlightSlots == [1, 2] && r.currentSlot == 1)
        #expect(r.newWorkerReady(slot: 2) == [.promote(slot: 2)])
        #expect(r.oldWorkerExited(slot: 2) == [.startNew(slot: 3)])
        #expect(r.replacedSlots == [0, 2] && r.phase(of: 1) == .startingNew && r.phase(of: 3) == .startingNew)
        #expect(
            r.newWorkerFailed(slot: 3, reason: "readiness timeout") == [
                .abandonNew(slot: 1), .finished(.failed(slot: 3, reason: "readiness timeout", replaced: [0, 2])),
            ])
    }

    @Test func stepByStepReplaceWithWrongEvents() {
        var r = RollingRestart(slots: [3, 1], strategy: .replace)
        #expect(r.slots == [3, 1] && r.strategy == .replace && r.maxSurge == 1 && !r.canary)
        #expect(r.currentSlot == nil && r.replacedSlots == [] && !r.isFinished && r.result == nil)
        #expect(r.newWorkerReady(slot: 3) == [] && r.oldWorkerExited(slot: 3) == [])  // before start
        #expect(r.start() == [.drainOld(slot: 3)])
        #expect(r.start() == [])
        #expect(r.newWorkerReady(slot: 3) == [] && r.newWorkerFailed(slot: 3, reason: "x") == [])
        #expect(r.oldWorkerExited(slot: 1) == [])
        #expect(r.oldWorkerExited(slot: 3) == [.startNew(slot: 3)])
        #expect(r.oldWorkerExited(slot: 3) == [])  // duplicate
        #expect(r.newWorkerReady(slot: 3) == [.promote(slot: 3), .drainOld(slot: 1)])
        #expect(r.currentSlot == 1 && r.replacedSlots == [3] && r.phase(of: 3) == .done)
        #expect(r.oldWorkerExited(slot: 1) == [.startNew(slot: 1)])
        #expect(r.newWorkerReady(slot: 1) == [.promote(slot: 1), .finished(.succeeded)])
        #expect(r.isFinished && r.result == .succeeded && r.currentSlot == nil && r.replacedSlots == [3, 1])
        #expect(r.newWorkerReady(slot: 1) == [] && r.abort(reason: "x") == [])
    }

    @Test func abortAbandonsStartingWorkers() {
        var r = RollingRestart(slots: [0, 1, 2], strategy: .surge, maxSurge: 3)
        #expect(r.start() == [.startNew(slot: 0), .startNew(slot: 1), .startNew(slot: 2)])
        #expect(r.newWorkerReady(slot: 1) == [.promote(slot: 1)])
        #expect(
            r.abort(reason: "deploy timed out after 10m") == [
                .abandonNew(slot: 0), .abandonNew(slot: 2),
                .finished(.failed(slot: -1, reason: "deploy timed out after 10m", replaced: [1])),
            ])
        #expect(r.isFinished && r.oldWorkerExited(slot: 1) == [])
        var idle = RollingRestart(slots: [0], strategy: .replace)
        #expect(idle.abort(reason: "shutdown") == [.finished(.failed(slot: -1, reason: "shutdown", replaced: []))])
    }

    @Test(arguments: [RollingRestart.Strategy.surge, .replace])
    func emptyRolloutSucceedsAtOnce(strategy: RollingRestart.Strategy) {
        var r = RollingRestart(slots: [], strategy: strategy, canary: true)
        #expect(r.start() == [.finished(.succeeded)])
        #expect(r.isFinished && r.replacedSlots == [] && r.currentSlot == nil)
        #expect(r.start() == [])
    }

    @Test func maxSurgeIsAtLeastOne() {
        #expect(RollingRestart(slots: [0], strategy: .surge, maxSurge: 0).maxSurge == 1)
        #expect(RollingRestart(slots: [0], strategy: .surge, maxSurge: -2).maxSurge == 1)
        #expect(RollingRestart.Strategy(rawValue: "auto") == nil)
    }
}
