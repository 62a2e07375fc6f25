import BatonCore
@testable import BatonDaemon
import BatonSystem
import Testing

/// What a scrape of the metrics endpoint renders: a value made on the loop from the supervisor
/// driven on the fake port, which later events do not change.
@Suite struct MetricsSnapshotTests {
    @Test func aSnapshotCopiesTheSlotsAndCountersAndStaysAsItWas() throws {
        let h = try DaemonHarness(workers: 3)
        try h.start()
        let before = h.supervisor.metricsSnapshot()
        #expect(before.slots.map(\.index) == [0, 1, 2])
        #expect(before.readyCount == 3)
        #expect(before.slots.map { $0.serving?.pid } == h.servingPIDs)
        #expect(before.slots.allSatisfy { $0.live.count == 1 && $0.live[0].release == h.initialRelease })
        #expect(before.deploysByOutcome.isEmpty && before.restartsByReason.isEmpty)

        let r1 = h.makeRelease("r1")
        let client = h.deploy(r1)
        h.finishOperations()
        #expect(client.reply?.ok == true)

        let after = h.supervisor.metricsSnapshot()
        #expect(after.deploysByOutcome == [.succeeded: 1])
        #expect(after.restartsByReason[.deploy] == 3)
        #expect(after.slots.allSatisfy { $0.ready && $0.live.map(\.release) == [r1] })
        #expect(after.slots.map { $0.serving?.pid } == h.servingPIDs)
        // The first scrape's value is untouched by the deploy.
        #expect(before.slots.allSatisfy { $0.live.map(\.release) == [h.initialRelease] })
        #expect(before.deploysByOutcome.isEmpty)
    }

    @Test func aSlotWaitingToRespawnHasNoServingWorker() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        h.autoReady = { _ in false }
        let pid = try #require(h.servingPIDs[1])
        let child = try #require(h.host.child(pid))
        child.end(.exited(1))
        h.advance(by: .zero)
        let snapshot = h.supervisor.metricsSnapshot()
        #expect(snapshot.slots[0].ready && !snapshot.slots[1].ready)
        #expect(snapshot.readyCount == 1)
        #expect(snapshot.restartsByReason[.crash] == 1)
    }
}
