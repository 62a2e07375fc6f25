import BatonCore
import Testing

/// Every combination of where a worker was, what it did, why baton stopped it and whether it
/// runs the rollout's release, against the rules stated in `WorkerExit`.
@Suite struct WorkerExitTests {
    @Test(arguments: WorkerExit.Place.allCases, WorkerExit.Stage.allCases)
    func everyCombination(place: WorkerExit.Place, stage: WorkerExit.Stage) {
        for stopReason in [nil, .readinessTimeout] as [RestartReason?] {
            for newRelease in [false, true] {
                let verdict = WorkerExit.classify(
                    place: place, stage: stage, stopReason: stopReason, exit: "exit code 3", pid: 42, runsRolloutRelease: newRelease)
                let expected: WorkerExit
                if place == .draining || (place == .current && stage == .draining) {
                    expected = .drained
                } else if place == .replacement && stage == .ready {
                    expected = .replacementFailed(reason: stopReason?.rawValue ?? "pid 42 exited after becoming ready (exit code 3)")
                } else if place == .replacement {
                    expected = .replacementFailed(reason: stopReason?.rawValue ?? "exited during start (exit code 3)")
                } else if stage == .ready && newRelease {
                    expected = .newReleaseFailed(
                        reason: "pid 42 exited after becoming ready (exit code 3)", otherwise: RestartCause(stopReason ?? .crash))
                } else if stage == .ready {
                    expected = .slotFailed(reason: RestartCause(stopReason ?? .crash), countsUptime: true)
                } else {
                    expected = .slotFailed(reason: stopReason.map { RestartCause($0) } ?? .exitedDuringStart, countsUptime: false)
                }
                #expect(verdict == expected, "\(place) \(stage) \(stopReason?.rawValue ?? "-") \(newRelease)")
            }
        }
    }

    @Test func aHeldNewWorkerThatWasReadyExitedAfterBecomingReady() {
        // Under surge, the other slots' new workers are ready but held while the canary
        // settles: one that crashes then did not exit "during start".
        #expect(
            WorkerExit.classify(place: .replacement, stage: .ready, stopReason: nil, exit: "exit code 70", pid: 9, runsRolloutRelease: true)
                == .replacementFailed(reason: "pid 9 exited after becoming ready (exit code 70)"))
    }

    @Test func aCrashAfterReadyOnTheNewReleaseIgnoresAStopReason() {
        // The release is bad whatever baton was about to do with the worker.
        #expect(
            WorkerExit.classify(place: .current, stage: .ready, stopReason: .watchdog, exit: "signal 11", pid: 7, runsRolloutRelease: true)
                == .newReleaseFailed(reason: "pid 7 exited after becoming ready (signal 11)", otherwise: RestartCause(.watchdog)))
    }

    /// Found by a memory-pressure audit: a canary the kernel OOM-killed after its window failed
    /// the deploy as "exited after becoming ready (signal 9)", which blames the release; and a
    /// serving worker OOM-killed while a policy restart of the same release ran was counted a crash.
    @Test func anOOMKillIsCalledOneWhereverTheWorkerWas() {
        func verdict(_ place: WorkerExit.Place, _ stage: WorkerExit.Stage, newRelease: Bool) -> WorkerExit {
            WorkerExit.classify(place: place, stage: stage, stopReason: .oom, exit: "signal 9", pid: 5, runsRolloutRelease: newRelease)
        }
        #expect(
            verdict(.current, .ready, newRelease: true)
                == .newReleaseFailed(reason: "pid 5 was killed by the kernel's OOM killer after becoming ready (signal 9)", otherwise: RestartCause(.oom)))
        #expect(
            verdict(.replacement, .ready, newRelease: true)
                == .replacementFailed(reason: "pid 5 was killed by the kernel's OOM killer after becoming ready (signal 9)"))
        #expect(
            verdict(.replacement, .starting, newRelease: true)
                == .replacementFailed(reason: "pid 5 was killed by the kernel's OOM killer during start (signal 9)"))
        #expect(verdict(.current, .ready, newRelease: false) == .slotFailed(reason: RestartCause(.oom), countsUptime: true))
    }

    @Test func onlyAWorkerThatWasReadyCountsItsUptime() {
        #expect(
            WorkerExit.classify(place: .current, stage: .ready, stopReason: nil, exit: "exit code 1", pid: 1, runsRolloutRelease: false)
                == .slotFailed(reason: RestartCause(.crash), countsUptime: true))
        #expect(
            WorkerExit.classify(place: .current, stage: .starting, stopReason: nil, exit: "exit code 1", pid: 1, runsRolloutRelease: true)
                == .slotFailed(reason: .exitedDuringStart, countsUptime: false))
    }

    @Test func aCauseShowsItsDetailAndCountsItsReason() {
        #expect(RestartCause.exitedDuringStart.text == "exited during start")
        #expect(RestartCause.exitedDuringStart.reason == .crash)
        #expect(RestartCause.spawnFailed("no such file").reason == .startFailed)
        #expect(RestartCause(.readinessTimeout).text == "readiness-timeout")
        // What an older daemon hands over in an upgrade maps back to the same counter.
        #expect(RestartCause(text: "max-requests") == RestartCause(.maxRequests))
        #expect(RestartCause(text: "exited during start") == .exitedDuringStart)
        #expect(RestartCause(text: "cannot exec /x: ENOENT") == .spawnFailed("cannot exec /x: ENOENT"))
    }
}
