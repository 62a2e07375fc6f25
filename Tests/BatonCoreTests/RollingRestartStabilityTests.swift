import BatonCore
import Testing

/// The stability window in the rollout machine: a slot is done only once its new worker
/// stayed up through its window, the canary's window passes before other slots are promoted, and
/// a new worker that exits inside its window fails the rollout.
@Suite("RollingRestart stability window")
struct RollingRestartStabilityTests {
    @Test("surge + canary: others boot beside their old workers but none is promoted before the canary's window passed")
    func canaryWaitsForItsWindow() {
        var m = RollingRestart(slots: [0, 1, 2], strategy: .surge, maxSurge: 2, canary: true, awaitsStability: true)
        #expect(m.start() == [.startNew(slot: 0), .startNew(slot: 1)])
        #expect(m.newWorkerReady(slot: 1) == [], "held: the canary has not passed")
        #expect(m.phase(of: 1) == .startingNew && m.replacedSlots == [])
        #expect(m.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(m.oldWorkerExited(slot: 0) == [.startNew(slot: 2)], "the canary is drained but not stable: slot 2 may boot")
        #expect(m.settlingSlots == [0])
        #expect(m.workerStable(slot: 1) == [], "a held worker's window counts from its ready")
        #expect(m.workerStable(slot: 0) == [.promote(slot: 1)])
        #expect(m.newWorkerReady(slot: 2) == [.promote(slot: 2)])
        #expect(m.oldWorkerExited(slot: 1) == [])
        #expect(m.oldWorkerExited(slot: 2) == [])
        #expect(!m.isFinished)
        #expect(m.workerStable(slot: 2) == [.finished(.succeeded)])
    }

    @Test("surge + canary: the canary passes once its new worker is past its window, while its old worker still drains")
    func canaryPassesWhileItsOldWorkerDrains() {
        var m = RollingRestart(slots: [0, 1, 2], strategy: .surge, maxSurge: 3, canary: true, awaitsStability: true)
        #expect(m.start() == [.startNew(slot: 0), .startNew(slot: 1), .startNew(slot: 2)])
        #expect(m.newWorkerReady(slot: 1) == [] && m.newWorkerReady(slot: 2) == [], "held")
        #expect(m.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        // The canary's old worker drains slowly (long requests): its window passes first.
        #expect(m.workerStable(slot: 0) == [.promote(slot: 1), .promote(slot: 2)])
        #expect(m.phase(of: 0) == .drainingOld)
        #expect(m.workerStable(slot: 1) == [] && m.workerStable(slot: 2) == [])
        #expect(m.oldWorkerExited(slot: 1) == [] && m.oldWorkerExited(slot: 2) == [])
        #expect(m.oldWorkerExited(slot: 0) == [.finished(.succeeded)])
    }

    @Test("surge + canary: a canary that fails abandons the held new workers and touched no other old worker")
    func failedCanaryAbandonsHeld() {
        var m = RollingRestart(slots: [0, 1, 2], strategy: .surge, maxSurge: 3, canary: true, awaitsStability: true)
        #expect(m.start() == [.startNew(slot: 0), .startNew(slot: 1), .startNew(slot: 2)])
        #expect(m.newWorkerReady(slot: 1) == [] && m.newWorkerReady(slot: 2) == [])
        #expect(
            m.newWorkerFailed(slot: 0, reason: "exit code 1")
                == [.abandonNew(slot: 1), .abandonNew(slot: 2), .finished(.failed(slot: 0, reason: "exit code 1", replaced: []))])
    }

    @Test("replace + canary: the canary's window passes before slot 1 starts")
    func replaceCanaryAlone() {
        var m = RollingRestart(slots: [0, 1], strategy: .replace, canary: true, awaitsStability: true)
        #expect(m.start() == [.drainOld(slot: 0)])
        #expect(m.oldWorkerExited(slot: 0) == [.startNew(slot: 0)])
        #expect(m.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(m.workerStable(slot: 0) == [.drainOld(slot: 1)])
    }

    @Test("a window that passes while the old worker still drains counts once the drain ends")
    func stableBeforeDrained() {
        var m = RollingRestart(slots: [0], strategy: .surge, awaitsStability: true)
        _ = m.start()
        _ = m.newWorkerReady(slot: 0)
        #expect(m.workerStable(slot: 0) == [])
        #expect(m.oldWorkerExited(slot: 0) == [.finished(.succeeded)])
    }

    @Test("a new worker that exits inside its window fails the rollout and its slot needs the previous release")
    func exitInsideWindowFails() {
        for strategy in [RollingRestart.Strategy.surge, .replace] {
            var m = RollingRestart(slots: [0, 1], strategy: strategy, canary: true, awaitsStability: true)
            _ = m.start()
            if strategy == .replace { #expect(m.oldWorkerExited(slot: 0) == [.startNew(slot: 0)]) }
            _ = m.newWorkerReady(slot: 0)
            // surge: slot 1 boots beside its old worker while the canary settles, and goes with it.
            if strategy == .surge { #expect(m.oldWorkerExited(slot: 0) == [.startNew(slot: 1)]) }
            #expect(m.phase(of: 1) == (strategy == .surge ? .startingNew : .pending), "\(strategy)")
            let abandoned: [RollingRestart.Action] = strategy == .surge ? [.abandonNew(slot: 1)] : []
            #expect(
                m.newWorkerFailed(slot: 0, reason: "exited") == abandoned + [.finished(.failed(slot: 0, reason: "exited", replaced: [0]))],
                "\(strategy)")
        }
    }

    @Test("replace: stability before the new worker is ready is ignored; without awaitsStability the event is a no-op")
    func ignoredEvents() {
        var m = RollingRestart(slots: [0], strategy: .replace, awaitsStability: true)
        _ = m.start()
        #expect(m.workerStable(slot: 0) == [], "the old worker drains: no new worker yet")
        _ = m.oldWorkerExited(slot: 0)
        #expect(m.workerStable(slot: 0) == [], "starting: not ready yet")
        #expect(m.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(m.workerStable(slot: 0) == [.finished(.succeeded)])

        var plain = RollingRestart(slots: [0], strategy: .surge)
        _ = plain.start()
        _ = plain.newWorkerReady(slot: 0)
        #expect(plain.workerStable(slot: 0) == [])
        #expect(plain.oldWorkerExited(slot: 0) == [.finished(.succeeded)])
    }
}
