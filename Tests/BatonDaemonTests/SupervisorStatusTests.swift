import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Foundation
import Testing

/// What `baton status` renders: the wire type, made on the loop from the supervisor driven on
/// the fake port (the same supervisor state a metrics scrape copies), which later events do not
/// change.
@Suite struct SupervisorStatusTests {
    static let mib: UInt64 = 1 << 20

    /// A time audit: ages were the wall clock now minus the wall clock at start, so a step of
    /// the wall clock (+3 days) showed a worker 58 s old as `3d0h`, and two workers started 63 s
    /// apart were 6 days apart in the metrics. The manual clock moves as the monotonic clock
    /// does while the wall clock stands still: a step of the wall clock back by as much.
    @Test func startTimesFollowTheMonotonicClock() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.advance(by: .seconds(3600))
        let wall = wallClockNow()
        let started = try #require(h.supervisor.statusReport(memory: [:]).workers.first?.startedAt)
        #expect(abs(wall - 3600 - started) < 60, "started \(wall - started) s ago")
        let live = try #require(h.supervisor.metricsSnapshot().slots.first?.live.first)
        #expect(abs(wall - 3600 - live.startedAtWall) < 60, "started \(wall - live.startedAtWall) s ago")
    }

    @Test func aReportHasTheMetricsWorkersAndTheirMeasuredTrees() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let pids = h.servingPIDs.compactMap { $0 }
        let measured = MemorySample(rss: 30 * Self.mib, pss: 20 * Self.mib, uss: 10 * Self.mib, shared: 5 * Self.mib)
        let report = h.supervisor.statusReport(memory: [pids[0]: measured])
        // Status and metrics see the same workers.
        #expect(report.workers.map(\.pid) == h.supervisor.metricsSnapshot().slots.flatMap { $0.live.map(\.pid) })
        #expect(report.slots == 2 && report.workers.map(\.pid) == pids)
        #expect(report.workers.map(\.state) == ["ready", "ready"])
        #expect(report.workers[0].pssBytes == 20 * Self.mib && report.workers[0].sharedBytes == 5 * Self.mib)
        #expect(report.workers[1].pssBytes == nil, "not measured: no figure")
        #expect(report.workers[0].ksmProfitBytes == nil, "memory.mergeable off: no KSM columns")
        #expect(report.degraded == nil && report.problems == nil && report.operation == nil && report.ksm == nil)
        #expect(report.memory == nil, "the host's figures are unreadable on the fake")
        // A deploy changes the supervisor, not the report already made.
        let before = report
        let r1 = h.makeRelease("r1")
        _ = h.deploy(r1)
        h.finishOperations()
        #expect(report == before && report.workers.allSatisfy { $0.release == h.initialRelease })
        #expect(h.supervisor.statusReport(memory: [:]).workers.allSatisfy { $0.release == r1 })
    }

    @Test func aSlotWithoutWorkersHasOneExitedRowAndTheBudgetSumsMeasuredPSS() throws {
        let h = try DaemonHarness(workers: 2) { config in
            config.memory.workerLimit = 64 * Self.mib
            config.memory.budget = .bytes(100 * Self.mib)
            config.memory.threshold = 0.8
        }
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 16384 * Self.mib, committed: 1024 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        try h.start()
        let serving = try #require(h.supervisor.slots[0].current)
        let slot = h.supervisor.slots[1]
        h.host.child(try #require(slot.current).pid)?.end(.exited(1))
        h.advance(by: .zero)
        #expect(slot.current == nil && slot.respawnAt != nil)

        let report = h.supervisor.statusReport(memory: [serving.pid: MemorySample(rss: 3 * Self.mib, pss: 2 * Self.mib, uss: Self.mib)])
        #expect(report.slots == 2 && report.workers.count == 2)
        let row = report.workers[0]
        #expect(row.pid == serving.pid && row.limitBytes == 64 * Self.mib && row.pssBytes == 2 * Self.mib)
        #expect(row.requestLimit == nil, "max_requests off: no limit")
        let exited = report.workers[1]
        #expect(exited.slot == 1 && exited.pid == 0 && exited.state == "exited" && exited.release == h.initialRelease)
        #expect(exited.lastRestartReason == RestartCause(.crash) && exited.restarts == slot.restarts)
        #expect(exited.nextStartIn == 1 && exited.pssBytes == nil && exited.limitBytes == nil)
        #expect(report.memory == MemoryStatus(budgetBytes: 100 * Self.mib, budgetSource: "configured", threshold: 0.8, workersPSSBytes: 2 * Self.mib))
        #expect(report.molds == nil, "exec mode: no molds")

        // A worker whose tree could not be measured is left out of the sum, and said to be
        // (an audit: "workers' PSS 0 B = 0%" for workers of 164 MiB).
        let unread = h.supervisor.statusReport(memory: [serving.pid: MemorySample(rss: 3 * Self.mib, pss: nil, uss: nil)])
        #expect(unread.memory?.workersPSSBytes == 0 && unread.memory?.workersUnmeasured == 1)
        #expect(
            unread.table(now: 0).contains("memory: workers' PSS 0 B (1 worker not measured: left out) = 0% of the 100.0 MiB budget"), "\(unread.table(now: 0))")
    }

    /// Left by the last review: memory the workers' restarts cannot free (outside them, or their
    /// fresh size) held the total over the threshold, and nothing said why no worker restarted.
    @Test func aTotalOverTheThresholdThatNoRestartCanFreeIsShown() throws {
        let h = try DaemonHarness(workers: 2) { config in
            config.memory.budget = .bytes(100 * Self.mib)
            config.memory.threshold = 0.5
            config.memory.checkInterval = .seconds(1)
            config.memory.smapsEvery = 1
            config.memory.minWorkerAge = .seconds(1)
        }
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 16384 * Self.mib, committed: 1024 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        // Two workers of 40 MiB PSS against a line of 50 MiB, neither grown since ready.
        h.host.fakeMemory.worker = MemorySample(rss: 60 * Self.mib, pss: 40 * Self.mib, uss: 30 * Self.mib, shared: 10 * Self.mib)
        try h.start()
        h.supervisor.startMemoryChecks()
        let pids = h.supervisor.slots.compactMap(\.current?.pid)
        h.advance(by: .seconds(30))
        #expect(h.supervisor.slots.compactMap(\.current?.pid) == pids, "no worker restarted")
        let report = h.supervisor.statusReport(memory: [:])
        let held = try #require(report.memory?.thresholdHeld)
        #expect(
            held.hasPrefix("workers' PSS 80.0 MiB > 50% of the 100.0 MiB budget (configured), and restarting the workers would free at most 0 B"), "\(held)")
        #expect(report.table(now: 0).contains("memory: no restart for the threshold: workers' PSS 80.0 MiB"), "\(report.table(now: 0))")
        // Under the line again: nothing to say.
        h.host.fakeMemory.worker = MemorySample(rss: 30 * Self.mib, pss: 20 * Self.mib, uss: 15 * Self.mib, shared: 5 * Self.mib)
        h.advance(by: .seconds(5))
        #expect(h.supervisor.statusReport(memory: [:]).memory?.thresholdHeld == nil)
    }

    /// A soak audit: the reads of smaps_rollup a status waits for were stuck in uninterruptible
    /// sleep while the host stalled, and status took 21 s (the CLI gave up, exit 4). Past 2 s
    /// the report takes each worker's last sample, and says so.
    @Test func aStatusWhoseMemoryReadIsStuckAnswersWithTheLastSamples() throws {
        let h = try DaemonHarness(workers: 2)
        h.host.fakeMemory.worker = MemorySample(rss: 30 * Self.mib, pss: 20 * Self.mib, uss: 10 * Self.mib, shared: 5 * Self.mib)
        try h.start()
        // The footprints settle first: their samples are read on the loop, and would wait too.
        h.advance(by: FootprintTracker.sampleInterval * 20)
        h.host.fakeMemory.stuck.withLock { $0 = true }
        var replies: [StatusReport] = []
        h.supervisor.requestStatus { replies.append($0) }
        #expect(h.loop.pump() != nil)
        #expect(replies.isEmpty, "the read is waited for first")
        h.clock.set(h.clock.now + Supervisor.statusReadWait)
        #expect(h.loop.pump() != nil)
        let report = try #require(replies.first)
        #expect(report.workers.map(\.pssBytes) == [20 * Self.mib, 20 * Self.mib])
        #expect(report.memoryNote?.hasPrefix("memory figures from the last check: this status's read of the workers' memory did not finish within 2s") == true)
        #expect(report.table(now: 0).contains("note: memory figures from the last check"))
        h.host.fakeMemory.stuck.withLock { $0 = false }
        h.settle()
        #expect(replies.count == 1, "answered once")
        // A read that finishes in time is the report's, with no note.
        h.supervisor.requestStatus { replies.append($0) }
        h.settle()
        #expect(replies.count == 2 && replies[1].memoryNote == nil)
    }

    /// An operator audit: during the start-up, slots whose first worker had not started yet
    /// (start_concurrency) were listed as `exited`.
    @Test func aSlotNotStartedYetIsNotExited() throws {
        let h = try DaemonHarness(workers: 3) { $0.app.startConcurrency = 1 }
        h.autoReady = { _ in false }
        try h.start()
        let states = h.supervisor.statusReport(memory: [:]).workers.map(\.state)
        #expect(states == ["starting", "not-started", "not-started"], "\(states)")
    }

    /// An operator audit (2 of 2): a SIGHUP or a deploy sent while the workers started was
    /// queued ("waiting: a start-up is in progress"), but `baton status` showed nothing queued.
    @Test func whatWaitsForTheStartUpIsShown() throws {
        let h = try DaemonHarness(workers: 2)
        h.autoReady = { _ in false }
        try h.start()
        #expect(h.supervisor.phase == .starting)
        let r1 = h.makeRelease("r1")
        h.deploy(r1)
        h.reload()
        let report = h.supervisor.statusReport(memory: [:])
        #expect(report.operation == nil)
        #expect(report.queuedOperations == ["deploy of \(r1)", "reload"], "\(String(describing: report.queuedOperations))")
        // Over the wire too (a re-audit: the field was left out of the JSON).
        let wire = try JSONDecoder().decode(StatusReport.self, from: JSONEncoder().encode(report))
        #expect(wire.queuedOperations == report.queuedOperations)
        let table = wire.table(now: 0)
        #expect(table.contains("waiting for the start-up: 2 queued\n  queued: deploy of \(r1)\n  queued: reload"), "\(table)")
    }
}
