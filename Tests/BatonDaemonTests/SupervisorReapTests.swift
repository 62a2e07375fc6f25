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

/// A hostile-app audit: a worker that moved to another process group (setpgid) never got its
/// stop signal, sent only to the group it had left, and was SIGKILLed at the stop timeout with
/// its requests cut (3 of 3 reloads and stops). Fake host and clock.
@Suite struct SupervisorProcessGroupTests {
    @Test func aWorkerThatLeftItsGroupGetsItsStopSignalOnce() throws {
        let h = try DaemonHarness(workers: 1) { $0.stop.timeout = .seconds(8) }
        try h.start()
        let old = try #require(h.supervisor.slots[0].current)
        let child = try #require(h.host.child(old.pid))
        h.host.fakeProcesses.setProcessGroup(getpgrp(), of: old.pid)
        let deploy = h.deploy(h.makeRelease("r1"))
        h.advance(by: .seconds(3))
        #expect(child.exit == .exited(0), "it took the stop signal: \(child.signals)")
        #expect(child.signals.filter { $0 == SIGTERM }.count == 1, "once: \(child.signals)")
        h.finishOperations()
        #expect(deploy.reply?.ok == true)
        let message = deploy.reply?.message ?? ""
        #expect(!message.contains("SIGKILL"), "\(message)")
    }

    @Test func aWorkerInItsGroupGetsItThroughTheGroupOnly() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let old = try #require(h.supervisor.slots[0].current)
        let child = try #require(h.host.child(old.pid))
        h.host.fakeProcesses.setProcessGroup(old.pid, of: old.pid)
        _ = h.deploy(h.makeRelease("r1"))
        h.advance(by: .seconds(3))
        #expect(child.signals.first == SIGTERM && child.signals.filter { $0 == SIGTERM }.count == 1, "once: \(child.signals)")
        #expect(h.host.groupSignals.contains { $0.group == old.pid && $0.signal == SIGTERM })
    }
}
