import BatonCore
import Testing

/// Recycles joining a running rollout (`RollingRestart.append(slot:)`).
@Suite("RollingRestart append")
struct RollingRestartAppendTests {
    @Test func aSlotAppendedStartsWhenTheWidthAllows() {
        var m = RollingRestart(slots: [0], strategy: .surge, maxSurge: 2)
        let joined1 = m.append(slot: 1)
        #expect(!joined1)  // not started yet
        #expect(m.start() == [.startNew(slot: 0)])
        let joined2 = m.append(slot: 1)
        #expect(joined2)
        #expect(m.phase(of: 1) == .pending)
        #expect(m.replan(strategy: .surge, width: 2) == [.startNew(slot: 1)])
        #expect(m.inFlightSlots == [0, 1])
    }

    @Test func theRolloutFinishesOnlyOnceTheAppendedSlotIsDone() {
        var m = RollingRestart(slots: [0], strategy: .surge, maxSurge: 1)
        _ = m.start()
        let joined3 = m.append(slot: 2)
        #expect(joined3)
        #expect(m.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        // Slot 0 is done once its old worker exited; slot 2 starts in its place.
        #expect(m.oldWorkerExited(slot: 0) == [.startNew(slot: 2)])
        #expect(m.newWorkerReady(slot: 2) == [.promote(slot: 2)])
        #expect(m.oldWorkerExited(slot: 2) == [.finished(.succeeded)])
        let joined4 = m.append(slot: 3)
        #expect(!joined4)
    }

    @Test func aSlotInFlightCannotJoinAgainButADoneOneCan() {
        var m = RollingRestart(slots: [0, 1], strategy: .surge, maxSurge: 1)
        _ = m.start()
        let joined5 = m.append(slot: 0)
        #expect(!joined5)
        _ = m.newWorkerReady(slot: 0)
        let joined6 = m.append(slot: 0)
        #expect(!joined6)  // its old worker still drains
        #expect(m.oldWorkerExited(slot: 0) == [.startNew(slot: 1)])
        let joined7 = m.append(slot: 0)
        #expect(joined7)
        #expect(m.slots == [0, 1])
        #expect(m.phase(of: 0) == .pending)
    }

    @Test func underReplaceAnAppendedSlotDrainsFirst() {
        var m = RollingRestart(slots: [0], strategy: .replace, maxUnavailable: 2)
        #expect(m.start() == [.drainOld(slot: 0)])
        let joined8 = m.append(slot: 1)
        #expect(joined8)
        #expect(m.replan(strategy: .replace, width: 2) == [.drainOld(slot: 1)])
    }
}
