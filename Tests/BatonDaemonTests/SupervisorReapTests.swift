import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// Exited children are reaped off the loop. A config audit under load: the `waitid` that
/// reaped a drained worker took 1.88 to 18.49 s on the loop (the kernel frees the process's
/// `/proc` entries in it), and baton logged nothing, enforced no stop timeout and answered no
/// `baton status` meanwhile. The loop reads the status only (the zombie keeps its pid) and
/// hands the reap to the reaper thread (`host.reaper(of:)`).
@Suite struct SupervisorReapTests {
    @Test func aWorkerThatExitedIsReapedOffTheLoop() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let crashed = try #require(h.supervisor.slots[0].current)
        h.host.child(crashed.pid)?.end(.exited(3))
        h.advance(by: .zero)
        #expect(h.host.reapedOnTheLoop.isEmpty)
        #expect(h.host.reapedOffTheLoop == [crashed.pid])
        // The status was read all the same, and the group killed while the zombie held the pid.
        #expect(h.supervisor.slots[0].lastRestartReason == RestartCause(.crash))
        #expect(h.host.groupSignals.contains { $0.group == crashed.pid && $0.signal == SIGKILL })

        // A drained one too (a deploy's old workers).
        let old = h.servingPIDs.compactMap { $0 }
        h.deploy(h.makeRelease("r2"))
        h.finishOperations()
        #expect(h.host.reapedOnTheLoop.isEmpty)
        #expect(Set(old).isSubset(of: h.host.reapedOffTheLoop))
    }

    @Test func aMoldThatExitedIsReapedOffTheLoop() throws {
        let h = try DaemonHarness(workers: 2) { $0.app.mode = .mold }
        try h.start()
        let mold = try #require(h.host.molds.first)
        mold.end(.signaled(SIGKILL))
        h.advance(by: .zero)
        #expect(h.host.reapedOnTheLoop.isEmpty)
        #expect(h.host.reapedOffTheLoop == [mold.pid])
        #expect(mold.reaped)
    }

    @Test func aProbeThatExitedIsReapedOffTheLoop() throws {
        let h = try DaemonHarness(workers: 1) { config in
            config.readiness = ReadinessConfig(mode: .exec, timeout: .seconds(30), probe: ["/srv/probe"], probeInterval: .seconds(1))
        }
        h.autoReady = { _ in false }
        var probes: [pid_t] = []
        h.host.onSpawn = { child in
            guard child.environment("BATON_WORKER_PID") != nil else { return }
            probes.append(child.pid)
            child.end(.exited(probes.count < 2 ? 1 : 0))
        }
        try h.start()
        h.advance(by: .seconds(1))
        #expect(h.allReady)
        #expect(probes.count == 2)
        #expect(h.host.reapedOnTheLoop.isEmpty)
        #expect(h.host.reapedOffTheLoop == probes)
    }
}
