import BatonCore
import Testing

/// The watchdog deadlines and the stopped-process check on a fake clock.
@Suite("WorkerLiveness")
struct WorkerLivenessTests {
    private func ms(_ n: Int) -> Duration { .milliseconds(n) }

    @Test func aWorkerThatPingsWithinTheIntervalIsKept() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        var worker = WorkerLiveness.Worker(pid: 10, readyAt: ms(100), watchdog: .seconds(1))
        #expect(tracker.watchdogDeadline(worker) == ms(1100))
        #expect(tracker.check(now: ms(1099), workers: [worker]).isEmpty)
        worker.lastPing = ms(1000)
        #expect(tracker.check(now: ms(1999), workers: [worker]).isEmpty)
        worker.lastPing = ms(1500)
        #expect(tracker.check(now: ms(2400), workers: [worker]).isEmpty)
    }

    @Test func aMissedWatchdogIsReportedAtTheDeadline() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 10, readyAt: ms(100), watchdog: .seconds(1), lastPing: ms(600))
        #expect(tracker.check(now: ms(1599), workers: [worker]).isEmpty)
        let verdicts = tracker.check(now: ms(1600), workers: [worker])
        #expect(verdicts.map(\.pid) == [10])
        #expect(verdicts.first?.reason == .watchdog)
        #expect(verdicts.first?.detail.contains("missed its watchdog") == true)
    }

    @Test func neverPingingCountsFromReady() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 10, readyAt: ms(500), watchdog: .seconds(2))
        #expect(tracker.check(now: ms(2499), workers: [worker]).isEmpty)
        #expect(tracker.check(now: ms(2500), workers: [worker]).first?.detail.contains("no WATCHDOG=1 since ready") == true)
    }

    /// A re-audit: baton stopped 15 to 31 s under load; its workers' pings sent meanwhile were
    /// dropped (their notify queues were full of request reports), and the first check after
    /// the stop replaced healthy workers (5 of 7 stops; one rolled a good deploy back). A check
    /// more than 1.5 intervals after the last one is baton's stall: the watchdog counts anew.
    @Test func aCheckAfterBatonItselfStalledGivesEveryWorkerAFreshInterval() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 10, readyAt: ms(100), watchdog: .seconds(4), lastPing: ms(2000))
        #expect(tracker.check(now: ms(3000), workers: [worker]).isEmpty)
        #expect(tracker.stalled == nil)
        // baton stopped from 3 s to 30 s.
        #expect(tracker.check(now: ms(30_000), workers: [worker]).isEmpty, "the missed pings are baton's stall")
        #expect(tracker.stalled == ms(27_000))
        #expect(tracker.watchdogDeadline(worker) == ms(34_000))
        // A worker that still does not ping goes one interval later.
        #expect(tracker.check(now: ms(33_999), workers: [worker]).isEmpty)
        #expect(tracker.stalled == nil)
        #expect(tracker.check(now: ms(34_000), workers: [worker]).map(\.reason) == [.watchdog])
        // Checks at their usual pace (at most one interval apart) judge as before.
        var steady = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        #expect(steady.check(now: ms(3000), workers: [worker]).isEmpty)
        #expect(steady.check(now: ms(6000), workers: [worker]).map(\.reason) == [.watchdog])
    }

    /// A crash audit (1 occurrence): the host stalled under other load (baton itself late by
    /// 4.49 s and 5.90 s), then all 4 workers missed their 2 s watchdog and were replaced at
    /// once: about 4 s without a worker. Every worker missing at once gets one more interval;
    /// missed again, they go. One worker alone, or some of several, go at once as before.
    @Test func everyWorkerMissingAtOnceGetsOneMoreIntervalThenGoes() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let workers = (10...13).map { WorkerLiveness.Worker(pid: $0, readyAt: ms(100), watchdog: .seconds(2), lastPing: ms(1000)) }
        #expect(tracker.check(now: ms(2000), workers: workers).isEmpty)
        #expect(tracker.check(now: ms(3000), workers: workers).isEmpty, "all four missed at once: one more interval")
        #expect(tracker.allMissed)
        #expect(tracker.watchdogDeadline(workers[0]) == ms(5000))
        #expect(tracker.check(now: ms(5000), workers: workers).map(\.pid) == [10, 11, 12, 13], "missed again: replaced")
        #expect(!tracker.allMissed)
        // After the grace, pings came back: the next time all miss at once, the grace again.
        var back = workers
        for i in back.indices { back[i].lastPing = ms(5500) }
        #expect(tracker.check(now: ms(6000), workers: back).isEmpty)
        #expect(tracker.check(now: ms(7500), workers: back).isEmpty && tracker.allMissed)
        // Some missing while others ping: those go at once.
        back[0].lastPing = ms(9000)
        #expect(tracker.check(now: ms(9500), workers: back).map(\.pid) == [11, 12, 13])
        // Deadlines a few milliseconds apart (workers made ready one after another): the first
        // due does not go alone (a real SIGSTOP of 4 workers for 3.2 s replaced slot 0, 11 ms
        // before the others were due).
        var staggered = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let apart = (0..<4).map { WorkerLiveness.Worker(pid: Int32(20 + $0), readyAt: ms(100), watchdog: .seconds(2), lastPing: ms(1000 + 3 * $0)) }
        #expect(staggered.check(now: ms(3000), workers: apart).isEmpty && staggered.allMissed)
        // Others pinging at half the interval are due 1 s later at the soonest: the late one goes.
        var healthy = apart
        for i in 1..<4 { healthy[i].lastPing = ms(2000) }
        var one = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        #expect(one.check(now: ms(3000), workers: healthy).map(\.pid) == [20])
        // A single worker has no grace.
        var single = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        #expect(single.check(now: ms(3000), workers: [workers[0]]).map(\.pid) == [10])
    }

    @Test func aPingBeforeReadyDoesNotShortenTheFirstInterval() {
        let tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 10, readyAt: ms(5000), watchdog: .seconds(1), lastPing: ms(100))
        #expect(tracker.watchdogDeadline(worker) == ms(6000))
    }

    @Test func aTrackerStartedAfterReadyGivesAFullInterval() {
        // After `baton upgrade`: the worker was ready long ago, its pings were seen by the old image.
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .seconds(3600))
        let worker = WorkerLiveness.Worker(pid: 10, readyAt: .seconds(10), watchdog: .seconds(5))
        #expect(tracker.check(now: .seconds(3604), workers: [worker]).isEmpty)
        #expect(tracker.check(now: .seconds(3605), workers: [worker]).map(\.reason) == [.watchdog])
    }

    @Test func workersWithoutAWatchdogAreNeverReportedForIt() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 10, readyAt: .zero)
        #expect(tracker.watchdogDeadline(worker) == nil)
        #expect(tracker.check(now: .seconds(86_400), workers: [worker]).isEmpty)
    }

    @Test func aStoppedWorkerGoesAfterTheTimeout() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: .seconds(10)), now: .zero)
        #expect(tracker.wantsProcessStates)
        let running = WorkerLiveness.Worker(pid: 7, readyAt: .zero, processStates: ["S", "S"])
        var stopped = WorkerLiveness.Worker(pid: 8, readyAt: .zero, processStates: ["T"])
        #expect(tracker.check(now: .seconds(1), workers: [running, stopped]).isEmpty)
        #expect(tracker.stoppedSince == [8: .seconds(1)])
        #expect(tracker.check(now: ms(10_999), workers: [running, stopped]).isEmpty)
        let verdicts = tracker.check(now: .seconds(11), workers: [running, stopped])
        #expect(verdicts.map(\.pid) == [8])
        #expect(verdicts.first?.reason == .liveness)
        #expect(verdicts.first?.detail.contains("state T") == true)
        // Once reported it is forgotten (the supervisor replaces it).
        #expect(tracker.stoppedSince.isEmpty)
        stopped.processStates = ["S"]
        #expect(tracker.check(now: .seconds(12), workers: [running, stopped]).isEmpty)
    }

    @Test func aChildStoppedByATracerCounts() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: .seconds(2)), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 8, readyAt: .zero, processStates: ["S", "t", "R"])
        #expect(tracker.check(now: .seconds(1), workers: [worker]).isEmpty)
        #expect(tracker.check(now: .seconds(3), workers: [worker]).first?.detail.contains("tracer") == true)
    }

    @Test func resumingResetsTheStoppedClock() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: .seconds(10)), now: .zero)
        var worker = WorkerLiveness.Worker(pid: 8, readyAt: .zero, processStates: ["T"])
        #expect(tracker.check(now: .seconds(1), workers: [worker]).isEmpty)
        worker.processStates = ["S"]
        #expect(tracker.check(now: .seconds(5), workers: [worker]).isEmpty)
        worker.processStates = ["T"]
        #expect(tracker.check(now: .seconds(6), workers: [worker]).isEmpty)
        #expect(tracker.check(now: .seconds(15), workers: [worker]).isEmpty)
        #expect(tracker.check(now: .seconds(16), workers: [worker]).count == 1)
    }

    @Test func zombiesAndUnreadStatesAreNotLiveness() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: .seconds(1)), now: .zero)
        let zombie = WorkerLiveness.Worker(pid: 8, readyAt: .zero, processStates: ["Z"])
        let unread = WorkerLiveness.Worker(pid: 9, readyAt: .zero, processStates: [])
        for t in 1...5 {
            #expect(tracker.check(now: .seconds(t), workers: [zombie, unread]).isEmpty)
        }
    }

    @Test func theWatchdogWinsOverLivenessAndGoneWorkersAreForgotten() {
        var tracker = WorkerLiveness(settings: .init(stoppedTimeout: .seconds(1)), now: .zero)
        let worker = WorkerLiveness.Worker(pid: 8, readyAt: .zero, watchdog: .seconds(1), processStates: ["T"])
        let other = WorkerLiveness.Worker(pid: 9, readyAt: .zero, processStates: ["T"])
        #expect(tracker.check(now: ms(500), workers: [worker, other]).isEmpty)
        #expect(tracker.check(now: .seconds(1), workers: [worker]).map(\.reason) == [.watchdog])
        #expect(tracker.stoppedSince.isEmpty)
    }

    @Test func nextCheckIsTheEarliestDeadlineOrAQuarterOfTheTimeout() {
        let tracker = WorkerLiveness(settings: .init(stoppedTimeout: .seconds(8)), now: .zero)
        let a = WorkerLiveness.Worker(pid: 1, readyAt: .seconds(10), watchdog: .seconds(5), lastPing: .seconds(12))
        let b = WorkerLiveness.Worker(pid: 2, readyAt: .seconds(10), watchdog: .seconds(5), lastPing: .seconds(13))
        #expect(tracker.nextCheck(now: .seconds(14), workers: [a, b], fallback: .seconds(5)) == .seconds(16))
        #expect(tracker.nextCheck(now: .seconds(14), workers: [], fallback: .seconds(5)) == .seconds(16))
        #expect(tracker.nextCheck(now: .seconds(14), workers: [], fallback: .seconds(30)) == .seconds(16))
        let none = WorkerLiveness(settings: .init(stoppedTimeout: nil), now: .zero)
        #expect(none.nextCheck(now: .seconds(14), workers: [], fallback: nil) == nil)
        #expect(none.nextCheck(now: .seconds(14), workers: [], fallback: .seconds(3)) == .seconds(17))
        // A deadline already past: soon, not in a busy loop.
        #expect(none.nextCheck(now: .seconds(30), workers: [a], fallback: nil) == .seconds(30) + .milliseconds(10))
    }
}

@Suite("LivenessProbeRecord")
struct LivenessProbeRecordTests {
    @Test func replacesAfterTheThresholdOfFailuresInARow() {
        var record = LivenessProbeRecord(threshold: 3)
        let verdicts = [false, false, true, false, false, false].map { record.record(succeeded: $0) }
        #expect(verdicts == [false, false, false, false, false, true])
        #expect(record.failures == 3)
    }

    @Test func aSuccessStartsOver() {
        var record = LivenessProbeRecord(threshold: 2)
        _ = record.record(succeeded: false)
        _ = record.record(succeeded: true)
        #expect(record.failures == 0)
    }

    @Test func aThresholdBelowOneIsOne() {
        var record = LivenessProbeRecord(threshold: 0)
        let replace = record.record(succeeded: false)
        #expect(replace)
    }
}
