import BatonCore
import Testing

/// Every combination of where a worker was, what it did, why baton stopped it and whether it
/// runs the rollout's release, against the rules stated in `WorkerExit`.
@Suite struct WorkerExitTests {
    @Test(arguments: WorkerExit.Place.allCases, WorkerExit.Stage.allCases)
    func everyCombination(place: WorkerExit.Place, stage: WorkerExit.Stage) {
        for stopReason in [nil, "readiness-timeout"] as [String?] {
            for newRelease in [false, true] {
                let verdict = WorkerExit.classify(
                    place: place, stage: stage, stopReason: stopReason, exit: "exit code 3", pid: 42, runsRolloutRelease: newRelease)
                let expected: WorkerExit
                if place == .draining || (place == .current && stage == .draining) {
                    expected = .drained
                } else if place == .replacement {
                    expected = .replacementFailed(reason: stopReason ?? "exited during start (exit code 3)")
                } else if stage == .ready && newRelease {
                    expected = .newReleaseFailed(reason: "pid 42 exited after becoming ready (exit code 3)")
                } else if stage == .ready {
                    expected = .slotFailed(reason: stopReason ?? "crash", countsUptime: true)
                } else {
                    expected = .slotFailed(reason: stopReason ?? "exited during start", countsUptime: false)
                }
                #expect(verdict == expected, "\(place) \(stage) \(stopReason ?? "-") \(newRelease)")
            }
        }
    }

    @Test func aCrashAfterReadyOnTheNewReleaseIgnoresAStopReason() {
        // The release is bad whatever baton was about to do with the worker.
        #expect(
            WorkerExit.classify(place: .current, stage: .ready, stopReason: "watchdog", exit: "signal 11", pid: 7, runsRolloutRelease: true)
                == .newReleaseFailed(reason: "pid 7 exited after becoming ready (signal 11)"))
    }

    @Test func onlyAWorkerThatWasReadyCountsItsUptime() {
        #expect(
            WorkerExit.classify(place: .current, stage: .ready, stopReason: nil, exit: "exit code 1", pid: 1, runsRolloutRelease: false)
                == .slotFailed(reason: "crash", countsUptime: true))
        #expect(
            WorkerExit.classify(place: .current, stage: .starting, stopReason: nil, exit: "exit code 1", pid: 1, runsRolloutRelease: true)
                == .slotFailed(reason: "exited during start", countsUptime: false))
    }
}
