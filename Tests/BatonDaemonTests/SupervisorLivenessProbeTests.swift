import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// The liveness probe on a host whose CPUs are saturated, found by a CPU audit (12 busy loops
/// on 2 cores): every worker's probe timed out waiting for a CPU, all 6 workers were replaced
/// within 1.8 s, their replacements never became ready, and nothing served for 25 s. Fake
/// host and clock, no process.
@Suite struct SupervisorLivenessProbeTests {
    /// `workers` with a liveness probe every second, killed after 500 ms, 3 failures in a row
    /// replace; each probe run gets `probe` (nil: it never ends by itself).
    func harness(workers: Int, probe: ((FakeChild) -> Void)? = nil) throws -> DaemonHarness {
        let h = try DaemonHarness(workers: workers) { config in
            config.readiness = ReadinessConfig(mode: .notify, timeout: .seconds(30), stoppedTimeout: nil)
            config.readiness.livenessProbe = ["/srv/alive"]
            config.readiness.livenessInterval = .seconds(1)
            config.readiness.probeTimeout = .milliseconds(500)
            config.readiness.livenessFailures = 3
        }
        h.host.onSpawn = { child in
            guard child.environment("BATON_WORKER_PID") != nil else { return }
            probe?(child)
        }
        return h
    }

    /// 2 workers whose probe runs never end by themselves and whose trees waited `waited`
    /// seconds for a CPU each (the workers' trees read nothing); started, then 15 s of probes.
    /// Returns the harness and the workers serving before those 15 s.
    func probesStarved(waited: Double) throws -> (DaemonHarness, before: [pid_t?]) {
        let h = try harness(workers: 2)
        let host = h.host
        host.cpuTime = { pid in
            host.children.contains { $0.pid == pid && $0.environment("BATON_WORKER_PID") != nil }
                ? ProcessPriority.CPUTime(seconds: 0.01, waitedSeconds: waited) : nil
        }
        try h.start()
        let before = h.servingPIDs
        h.advance(by: .seconds(15))
        return (h, before)
    }

    @Test func aProbeTimedOutWhileItWaitedForACPUIsNotCounted() throws {
        let (h, before) = try probesStarved(waited: 0.4)
        #expect(h.servingPIDs == before, "no worker replaced for probes starved of CPU")
        let probes = h.host.children.filter { $0.environment("BATON_WORKER_PID") != nil }
        #expect(probes.count >= 8 && probes.allSatisfy { $0.signals == [SIGKILL] }, "each run killed at its timeout: \(probes.count)")
    }

    @Test func aProbeTimedOutWithoutWaitingForACPUCounts() throws {
        let (h, before) = try probesStarved(waited: 0.1)
        #expect(h.servingPIDs != before, "a hung worker is still replaced")
        #expect(h.supervisor.slots.contains { $0.lastRestartReason?.reason == .livenessProbe })
    }

    /// The only worker serving gets its failures counted once more before it is replaced (a
    /// re-audit: never replacing it left a stopped worker, the app's only one, unreplaced); with
    /// 2 that both fail, one at a time.
    @Test func theOnlyWorkerServingIsReplacedAfterOneGrace() throws {
        let alone = try harness(workers: 1) { $0.end(.exited(1)) }
        try alone.start()
        let only = alone.servingPIDs
        alone.advance(by: .seconds(5))
        #expect(alone.servingPIDs == only, "3 failures, then a grace")
        #expect(alone.host.child(only[0]!)?.signals.isEmpty == true)
        alone.advance(by: .seconds(3))
        #expect(alone.host.child(only[0]!)?.signals.contains(SIGTERM) == true, "3 more: replaced")

        let pair = try harness(workers: 2) { $0.end(.exited(1)) }
        try pair.start()
        let first = pair.servingPIDs
        pair.advance(by: .seconds(20))
        #expect(zip(pair.servingPIDs, first).allSatisfy { $0 != $1 }, "both replaced in the end: \(first) → \(pair.servingPIDs)")
    }

    /// A probe killed at its timeout is killed with its group: its children (`sh -c 'sleep …'`)
    /// outlived it, handed to baton and reported as strays (a re-audit: 28 after 30 s).
    @Test func aProbeTimedOutIsKilledWithItsGroup() throws {
        let h = try harness(workers: 1)
        let host = h.host
        host.onSpawn = { child in
            guard child.environment("BATON_WORKER_PID") != nil else { return }
            host.fakeProcesses.setProcessGroup(child.pid, of: child.pid)
        }
        try h.start()
        h.advance(by: .milliseconds(1600))
        let probe = try #require(h.host.children.last { $0.environment("BATON_WORKER_PID") != nil })
        #expect(h.host.groupSignals.contains { $0.group == probe.pid && $0.signal == SIGKILL }, "\(h.host.groupSignals)")
    }

    /// A probe still dying when its worker exits stays baton's own until it is gone (the audit
    /// saw it reported as a process that left its worker's group, 4 of 4 deploys).
    @Test func aProbeKilledWithItsWorkerIsBatonsUntilItIsGone() throws {
        let h = try harness(workers: 1) { $0.diesLate = true }
        try h.start()
        let worker = try #require(h.servingPIDs[0])
        h.advance(by: .seconds(1))
        let probe = try #require(h.host.children.last { $0.environment("BATON_WORKER_PID") != nil && $0.isRunning })
        h.host.child(worker)?.end(.signaled(SIGKILL))
        h.advance(by: .zero)
        #expect(probe.signals.contains(SIGKILL))
        #expect(h.supervisor.supervisedPIDs.contains(probe.pid), "killed, not gone yet: still baton's")
        probe.end(.signaled(SIGKILL))
        h.advance(by: .zero)
        #expect(!h.supervisor.supervisedPIDs.contains(probe.pid))
        #expect(h.supervisor.dyingProbes.isEmpty)
    }

    /// The audit (4 of 4): a boot starved of CPU that hit its readiness timeout was told to send
    /// READY=1 or change `[readiness] mode`; it said how long the boot waited for a CPU.
    @Test func aReadinessTimeoutOfABootStarvedOfCPUSaysSo() throws {
        let h = try DaemonHarness(workers: 1) { $0.readiness.timeout = .seconds(8) }
        try h.start()
        let host = h.host
        let first = Set(host.children.map(\.pid))
        host.cpuTime = { pid in first.contains(pid) ? nil : ProcessPriority.CPUTime(seconds: 0.7, waitedSeconds: 6.5) }
        h.autoReady = { _ in false }
        let deploy = h.deploy(h.makeRelease("r1"))
        h.advance(by: .seconds(9))
        h.autoReady = { _ in true }
        h.finishOperations()
        let error = try #require(deploy.reply?.error)
        // How many boots ran on how many CPUs (a CPU audit: "the host is busy" for baton's own
        // boots at once), and the boot counts as a whole CPU for the next deploy.
        #expect(error.contains("not ready after 8s (it waited 6.50s of them for a CPU, 1 boot running on baton's "), "\(error)")
        #expect(error.contains(": fewer at once (--max-surge), a longer [readiness] timeout, or more CPU)"), "\(error)")
        #expect(!error.contains("READY=1"))
        #expect(h.supervisor.bootBudget.shares.last == 1)
    }
}
