import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// What `baton status` renders: a value made on the loop from the supervisor driven on the fake
/// port (the same supervisor state a metrics scrape copies), which later events do not change.
@Suite struct StatusSnapshotTests {
    static let mib: UInt64 = 1 << 20

    @Test func aSnapshotHasTheMetricsWorkersAndRendersTheirMeasuredTrees() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let pids = h.servingPIDs.compactMap { $0 }
        let measured = MemorySample(rss: 30 * Self.mib, pss: 20 * Self.mib, uss: 10 * Self.mib, shared: 5 * Self.mib)
        let snapshot = h.supervisor.statusSnapshot(memory: [pids[0]: measured])
        // Status and metrics see the same workers.
        #expect(snapshot.slots.map { $0.workers.map(\.pid) } == h.supervisor.metricsSnapshot().slots.map { $0.live.map(\.pid) })
        let report = snapshot.report()
        #expect(report.slots == 2 && report.workers.map(\.pid) == pids)
        #expect(report.workers.map(\.state) == ["ready", "ready"])
        #expect(report.workers[0].pssBytes == 20 * Self.mib && report.workers[0].sharedBytes == 5 * Self.mib)
        #expect(report.workers[1].pssBytes == nil, "not measured: no figure")
        #expect(report.workers[0].ksmProfitBytes == nil, "memory.mergeable off: no KSM columns")
        #expect(report.degraded == nil && report.problems == nil && report.operation == nil)
        #expect(report.memory == nil, "the host's figures are unreadable on the fake")
        // The same snapshot renders the same report after a deploy changed the supervisor.
        let r1 = h.makeRelease("r1")
        _ = h.deploy(r1)
        h.finishOperations()
        #expect(snapshot.report() == report)
        #expect(h.supervisor.statusReport(memory: [:]).workers.allSatisfy { $0.release == r1 })
    }

    @Test func aSlotWithoutWorkersRendersOneExitedRowAndTheBudgetSumsMeasuredPSS() {
        let worker = StatusSnapshot.Worker(
            pid: 7, state: "ready", release: "/r", generation: 1, startedAtWall: 10, readyAfter: 1,
            memory: MemorySample(rss: 3 * Self.mib, pss: 2 * Self.mib, uss: Self.mib), statusText: "ok", requests: 5, requestLimit: 100,
            leakMiBPerHour: 1.5, secondsToLimit: 60)
        let snapshot = StatusSnapshot(
            app: "a", pid: 1, state: "running", release: "/r", listeners: ["127.0.0.1:1"], summary: "1/2",
            slots: [
                .init(
                    index: 0, release: "/r", generation: 1, restarts: 0, lastRestartReason: nil, consecutiveFailures: 0, crashLoop: false,
                    nextStartIn: nil, workers: [worker]),
                .init(
                    index: 1, release: "/r", generation: 3, restarts: 2, lastRestartReason: RestartCause(.crash), consecutiveFailures: 2,
                    crashLoop: true, nextStartIn: 4, workers: []),
            ],
            workerLimit: 64 * Self.mib, mergeable: true, operation: nil, degraded: true, logDroppedBytes: 0, problems: ["p"], oom: nil,
            reservation: nil, ksm: nil, molds: nil, moldRestarts: 0, budget: .init(bytes: 100 * Self.mib, source: "configured", threshold: 0.8))
        let report = snapshot.report()
        #expect(report.workers.count == 2)
        #expect(report.workers[0].requestLimit == 100 && report.workers[0].limitBytes == 64 * Self.mib)
        #expect(report.workers[0].ksmProfitBytes == nil && report.workers[0].leakMiBPerHour == 1.5)
        let exited = report.workers[1]
        #expect(exited.pid == 0 && exited.state == "exited" && exited.crashLoop && exited.nextStartIn == 4)
        #expect(report.memory == MemoryStatus(budgetBytes: 100 * Self.mib, budgetSource: "configured", threshold: 0.8, workersPSSBytes: 2 * Self.mib))
        #expect(report.degraded == true && report.problems == ["p"] && report.molds == nil)
    }
}
