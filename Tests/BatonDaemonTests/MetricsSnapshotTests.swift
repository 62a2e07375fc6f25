import BatonCore
@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Glibc
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

    /// One scrape of `server`, answered on the harness's loop.
    static func scrape(_ server: MetricsServer, _ h: DaemonHarness) throws -> String {
        let port = try #require(UInt16(server.address.split(separator: ":").last ?? ""))
        let fd = try #require(HTTP.connect(port: port))
        defer { close(fd) }
        HTTP.send(fd, "GET /metrics HTTP/1.0\r\n\r\n")
        h.settle()
        return HTTP.readResponse(fd)?.body ?? ""
    }

    /// A metrics audit: nothing in /metrics showed a crash loop or a degraded baton while it
    /// lasted (only `baton_deploys_total{outcome="degraded"}` went up, once).
    @Test func aCrashLoopAndADegradedBatonAreGauges() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let server = try MetricsServer(address: .tcp(host: "127.0.0.1", port: 0), loop: h.loop, source: h.supervisor)
        let calm = try Self.scrape(server, h)
        #expect(calm.contains("baton_slots_crash_looping 0") && calm.contains("baton_degraded 0"), "\(calm)")
        h.host.onSpawn = { child in if child.slot == 0 { child.end(.exited(1)) } }
        h.host.child(try #require(h.supervisor.slots[0].current?.pid))?.end(.exited(1))
        h.advance(by: .zero)
        for _ in 0..<3 { h.advance(by: try #require(h.supervisor.slots[0].respawnAt) - h.clock.now) }
        #expect(h.supervisor.slots[0].isCrashLooping)
        h.supervisor.degraded = true
        let trouble = try Self.scrape(server, h)
        #expect(trouble.contains("baton_slots_crash_looping 1") && trouble.contains("baton_degraded 1"), "\(trouble)")
    }
}
