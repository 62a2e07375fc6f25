import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// A worker's or mold's notify socket and output pipe are owned from the moment they are made
/// (`Supervisor.spawn`, `startMold`): a spawn that fails leaves neither open in baton, nor the
/// socket's file in the notify directory. Seen by the files they were open on (read by the fake
/// host while the spawn was being made), so no other test's descriptors count.
@Suite struct SupervisorSpawnDescriptorTests {
    /// Whether the spawn that failed was handed an output pipe and a notify socket, and whether
    /// baton still holds either, or a socket file in its notify directory.
    private func expectNothingLeft(_ h: DaemonHarness, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let failed = try #require(h.host.failedSpawns.last, sourceLocation: sourceLocation)
        let output = try #require(failed.output, sourceLocation: sourceLocation)
        let notify = try #require(failed.notify, "a notify socket was bound", sourceLocation: sourceLocation)
        #expect(output.hasPrefix("pipe:[") && notify.hasPrefix("socket:["), sourceLocation: sourceLocation)
        #expect(descriptors(openOn: output) == 0, "no end of its output pipe", sourceLocation: sourceLocation)
        #expect(descriptors(openOn: notify) == 0, "not its notify socket", sourceLocation: sourceLocation)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: h.supervisor.notifyDirectory)) ?? []
        #expect(files.isEmpty, "no socket file left: \(files)", sourceLocation: sourceLocation)
    }

    @Test func aWorkerThatCannotBeSpawnedLeavesNoDescriptorBehind() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let slot = h.supervisor.slots[0]
        h.host.spawnError = SpawnError(step: "exec /srv/worker", errno: ENOENT)
        h.host.child(try #require(slot.current).pid)?.end(.exited(1))
        h.advance(by: .zero)
        h.advance(by: try #require(slot.respawnAt) - h.clock.now)
        #expect(slot.current == nil && h.host.failedSpawns.count == 1)
        try expectNothingLeft(h)
    }

    @Test func aMoldThatCannotBeStartedLeavesNoDescriptorBehind() throws {
        let h = try DaemonHarness(workers: 1) { $0.app.mode = .mold }
        h.host.spawnError = SpawnError(step: "exec /srv/worker", errno: ENOENT)
        try h.start()
        #expect(h.supervisor.moldBook.molds.isEmpty && h.host.failedSpawns.count == 1)
        try expectNothingLeft(h)
    }
}
