import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// A worker's or mold's notify socket and output pipe are owned from the moment they are made
/// (`Supervisor.spawn`, `startMold`): a spawn that fails leaves neither open in baton, nor the
/// socket's file in the notify directory. Seen by the files they were open on (read by the fake
/// host while the spawn was being made), so no other test's descriptors count. A child that
/// started but that the loop cannot watch (a worker, a mold, a probe) is killed, not kept.
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

    /// A worker that started but that the loop cannot watch (epoll refuses its pidfd) would run
    /// untracked, serving on the listening socket with nobody to reap, stop or replace it: it is
    /// killed, its socket file goes, and its slot retries as after a failed spawn.
    @Test func aWorkerTheLoopCannotWatchIsKilledAndItsSlotRetries() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let slot = h.supervisor.slots[0]
        let first = try #require(slot.current)
        h.host.unwatchablePidfds = true
        h.host.child(first.pid)?.end(.exited(1))
        h.advance(by: .zero)
        h.advance(by: try #require(slot.respawnAt) - h.clock.now)
        let unwatched = try #require(h.host.children.last)
        #expect(unwatched.pid != first.pid && unwatched.slot == 0)
        #expect(unwatched.signals == [SIGKILL], "killed, not left running untracked")
        #expect(slot.current == nil && slot.respawnAt != nil, "the slot retries")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: h.supervisor.notifyDirectory)) ?? []
        #expect(files.isEmpty, "no socket file left: \(files)")
        h.host.unwatchablePidfds = false
        h.advance(by: try #require(slot.respawnAt) - h.clock.now)
        #expect(slot.current?.state == .ready, "the retry, watched, serves")
    }

    /// A mold the loop cannot watch would boot unseen (never ready, never timed out): it is
    /// killed and dropped, and the start fails as for a mold that cannot start.
    @Test func aMoldTheLoopCannotWatchIsKilledAndDropped() throws {
        let h = try DaemonHarness(workers: 1) { $0.app.mode = .mold }
        h.host.unwatchablePidfds = true
        try h.start()
        let mold = try #require(h.host.molds.first)
        #expect(mold.signals == [SIGKILL], "killed, not left booting unseen")
        #expect(h.supervisor.moldBook.molds.isEmpty)
        #expect(h.servingPIDs == [nil] && h.supervisor.slots[0].respawnAt != nil, "the slot retries")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: h.supervisor.notifyDirectory)) ?? []
        #expect(files.isEmpty, "no socket file left: \(files)")
    }

    /// A readiness probe the loop cannot watch would hold the worker's probe for good (no next
    /// run, no probe timeout): it is killed and the next run comes after probe_interval.
    @Test func aProbeTheLoopCannotWatchIsKilledAndRunsAgain() throws {
        let h = try DaemonHarness(workers: 1) { config in
            config.readiness = ReadinessConfig(mode: .exec, timeout: .seconds(30), probe: ["/srv/probe"], probeInterval: .seconds(1))
        }
        h.autoReady = { _ in false }
        // The worker's own pidfd is watchable; the first probe's is not.
        h.host.onSpawn = { [unowned host = h.host] child in
            if child.environment("BATON_WORKER_PID") == nil { host.unwatchablePidfds = true }
        }
        try h.start()
        let probes = { h.host.children.filter { $0.environment("BATON_WORKER_PID") != nil } }
        let first = try #require(probes().first)
        #expect(first.signals == [SIGKILL], "killed, not left holding the worker's probe")
        #expect(h.supervisor.slots[0].current?.probe == nil)
        h.host.unwatchablePidfds = false
        h.advance(by: .seconds(1))
        #expect(probes().count == 2, "the next run after probe_interval")
    }

    @Test func aMoldThatCannotBeStartedLeavesNoDescriptorBehind() throws {
        let h = try DaemonHarness(workers: 1) { $0.app.mode = .mold }
        h.host.spawnError = SpawnError(step: "exec /srv/worker", errno: ENOENT)
        try h.start()
        #expect(h.supervisor.moldBook.molds.isEmpty && h.host.failedSpawns.count == 1)
        try expectNothingLeft(h)
    }

    /// A scale audit: 128 workers under `ulimit -n 256` failed their starts with "placing
    /// descriptors: Too many open files" and nothing said what to raise.
    @Test func aStartThatFailsForWantOfDescriptorsSaysWhatToRaise() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.host.spawnError = SpawnError(step: "placing descriptors", errno: EMFILE)
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == false)
        #expect(
            client.reply?.error?.contains("placing descriptors: Too many open files (baton's open descriptors reached its limit of ") == true,
            "\(String(describing: client.reply))")
        let hint = "it holds about 3 per worker, and 10 more plus one per listening socket while one starts: raise LimitNOFILE= or ulimit -n)"
        #expect(client.reply?.error?.contains(hint) == true)
    }
}
