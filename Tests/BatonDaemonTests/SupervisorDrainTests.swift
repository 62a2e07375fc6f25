import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// Old workers that drain slowly, found by a drain audit (long requests through a deploy):
/// what they hold of the budget, a deadline that passes while only they are left, and what
/// the deploy says of a drain that did not end cleanly. Fake host and clock, no process.
@Suite struct SupervisorDrainTests {
    static let mib: UInt64 = 1 << 20

    /// `workers` of 60 MiB PSS on a 600 MiB budget, `[stop] timeout` 8 s, a roomy host; started,
    /// each worker of the first release ignoring the stop signal (a drain held by a long request).
    func harness(workers: Int, configure: (inout BatonConfig) -> Void = { _ in }) throws -> DaemonHarness {
        let h = try DaemonHarness(workers: workers) {
            $0.memory.budget = .bytes(600 * Self.mib)
            $0.deploy.workerFootprint = 60 * Self.mib
            $0.stop.timeout = .seconds(8)
            $0.deploy.stabilityWindow = .seconds(1)
            configure(&$0)
        }
        h.host.fakeMemory.worker = MemorySample(rss: 80 * Self.mib, pss: 60 * Self.mib, uss: 50 * Self.mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 8192 * Self.mib, committed: 1024 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        let initial = h.initialRelease
        h.host.onSpawn = { child in if child.release == initial { child.ignoresStopSignal = true } }
        try h.start()
        return h
    }

    /// The audit (2 of 2): during a deploy's drain `baton status` said 109.8 MiB of workers'
    /// PSS and `preflight` 65.8 MiB, "fits" with 84 MiB of headroom where about 40 MiB was left.
    @Test func preflightCountsTheWorkersStillDraining() throws {
        let h = try harness(workers: 2)
        let deploy = h.deploy(h.makeRelease("r1"))
        h.advance(by: .seconds(3))
        #expect(h.supervisor.slots.allSatisfy { $0.draining.count == 1 }, "the old workers drain")
        let (_, report) = try h.preflight(need: 0)
        #expect(report.workersPSSBytes == 4 * 60 * Self.mib, "2 new + 2 draining workers of 60 MiB")
        #expect(report.limits.first { $0.kind == "memory.budget" }?.availableBytes ?? 0 <= Int64(600 - 240) * Int64(Self.mib))
        h.finishOperations()
        #expect(deploy.reply?.ok == true)
    }

    /// The audit (3 of 3): `deploy --timeout 5s` with every new worker stable within about 1 s
    /// and old workers finishing 20 s requests: the deadline rolled the healthy release back,
    /// one slot at a time behind each drain, exit 4 after 9 s.
    @Test func aDeadlineWhileOnlyOldWorkersDrainDoesNotRollBack() throws {
        let h = try harness(workers: 2)
        let r1 = h.makeRelease("r1")
        let deploy = h.deploy(r1, timeout: "5s")
        h.advance(by: .seconds(5))
        #expect(deploy.reply == nil, "it waits for the drains: \(String(describing: deploy.reply))")
        #expect(
            deploy.progress.contains {
                $0.hasPrefix("deadline of 5s passed while only old workers drain (every slot's new worker serves)")
            }, "\(deploy.progress)")
        h.advance(by: .seconds(10))
        let reply = try #require(deploy.reply)
        #expect(reply.ok == true, "\(reply)")
        #expect(h.supervisor.slots.allSatisfy { $0.current?.spec.release == r1 && $0.draining.isEmpty })
        #expect(h.supervisor.releaseState.current.directory == r1)
        #expect(h.supervisor.history.last?.outcome == .succeeded)
        // The drains were cut: the final line and history say so.
        #expect(reply.message?.contains("; requests in flight may have been cut: 2 old workers did not drain cleanly (slot") == true, "\(reply)")
        #expect(h.supervisor.history.last?.detail?.contains("SIGKILLed at the stop timeout") == true)
    }

    /// A re-audit (1 of 21): the deadline's timer ran late, after the last new worker became
    /// ready (15 ms past the deadline); it printed "deadline of 5s passed while only old workers
    /// drain …: the deploy ends when they are gone", and the deploy then rolled back. Proven
    /// after the deadline is late: it rolls back, and says nothing else.
    @Test func aReleaseProvenAfterTheDeadlineRollsBackWithoutSayingOtherwise() throws {
        let h = try harness(workers: 1) { $0.deploy.stabilityWindow = .zero }
        h.autoReady = { _ in false }
        let deploy = h.deploy(h.makeRelease("r1"), timeout: "5s")
        h.advance(by: .milliseconds(4900))
        // The loop wakes late: the new worker's READY=1 is handled before the deadline's timer.
        h.clock.set(h.clock.now + .milliseconds(115))
        h.autoReady = { _ in true }
        h.settle()
        h.finishOperations()
        #expect(deploy.reply?.code == 4, "\(String(describing: deploy.reply))")
        #expect(!deploy.progress.contains { $0.contains("while only old workers drain") }, "\(deploy.progress)")
    }

    /// A pause audit (2 of 2): baton stopped (`kill -STOP`) 1.5 s into `deploy --timeout 5s` for
    /// 8 s, its new workers' stability windows over at 2 s (here: at 1 s, stopped at 0.5 s): when it ran again, the windows' timers
    /// ran late, after the deadline, and the proven release was rolled back (exit 4).
    @Test func aReleaseProvenBeforeTheDeadlineWhileBatonWasStoppedIsKept() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.stabilityWindow = .seconds(1) }
        try h.start()
        let r1 = h.makeRelease("r1")
        let deploy = h.deploy(r1, timeout: "5s")
        h.advance(by: .milliseconds(500))
        #expect(deploy.reply == nil, "a window is still to pass: \(deploy.progress)")
        h.clock.set(h.clock.now + .seconds(8))  // baton was stopped: every timer is late at once
        h.settle()
        h.finishOperations()
        #expect(deploy.reply?.ok == true, "\(String(describing: deploy.reply))")
        #expect(h.supervisor.releaseState.current.directory == r1)
    }

    /// A deadline that passes before every new worker served still rolls back.
    @Test func aDeadlineBeforeEveryNewWorkerServedRollsBack() throws {
        let h = try harness(workers: 2)
        h.autoReady = { $0.slot != 1 }
        let deploy = h.deploy(h.makeRelease("r1"), timeout: "5s")
        h.advance(by: .seconds(20))
        h.autoReady = { _ in true }
        h.finishOperations()
        #expect(deploy.reply?.code == 4, "\(String(describing: deploy.reply))")
        #expect(h.supervisor.releaseState.current.directory == h.initialRelease)
    }

    /// The audit (2 of 2): an old worker that exited 1 from a failed drain (the demo worker's
    /// own drain timeout, 20 s requests cut) was reported "drained in 3.01s", and the deploy
    /// "finished" with nothing else said.
    @Test func anOldWorkerThatExitsNonZeroWhileDrainingDidNotDrain() throws {
        let h = try harness(workers: 1)
        let old = try #require(h.servingPIDs[0])
        let deploy = h.deploy(h.makeRelease("r1"))
        h.advance(by: .seconds(3))
        h.host.child(old)?.end(.exited(1))
        h.finishOperations()
        #expect(!deploy.progress.contains { $0.contains("pid \(old) drained in") }, "\(deploy.progress)")
        #expect(
            deploy.progress.contains { $0.hasPrefix("slot 0: pid \(old) exited with code 1 while it drained, after ") && $0.contains("not a clean drain") },
            "\(deploy.progress)")
        #expect(deploy.reply?.ok == true)
        #expect(
            deploy.reply?.message?.hasSuffix("1 old worker did not drain cleanly (slot 0: pid \(old) exited with code 1)") == true,
            "\(String(describing: deploy.reply))")
    }

    /// The audit (2 of 2): `deploy --dry-run` during a deploy of 3 workers planned "surge, 4
    /// slots at once (auto: 1 more fit, …)": the running rollout's 3 slots in flight (old
    /// workers draining) plus the one that fit beside them.
    @Test func aDryRunDuringADeployPlansItsOwnFirstStep() throws {
        let h = try harness(workers: 3) {
            $0.deploy.strategy = .auto
            $0.deploy.surgeWidth = .auto
            $0.deploy.canary = false
        }
        let running = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: h.makeRelease("r1"), maxSurge: 3), waiter: running, uid: 0)
        h.awaitReads()
        h.advance(by: .seconds(2))
        #expect(h.supervisor.slots.allSatisfy { $0.draining.count == 1 }, "\(running.progress)")
        let dry = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: h.makeRelease("r2"), dryRun: true, wait: true), waiter: dry, uid: 0)
        h.awaitReads()
        let strategy = try #require(dry.reply?.details?.first { $0.hasPrefix("strategy: ") })
        let width = strategy.split(separator: " ").dropFirst(2).first.flatMap { Int($0) }
        #expect(width.map { $0 <= 3 } ?? strategy.contains("replace"), "\(strategy)")
        h.finishOperations()
        #expect(running.reply?.ok == true)
    }
}

extension SupervisorDrainTests {
    /// A systemd audit: a worker stopped (SIGSTOP) acts on no stop signal until it runs again:
    /// `systemctl stop` took the whole stop timeout (10.3 s, 0.08 s otherwise), and a restart
    /// 16.2 s. As systemd does, SIGCONT follows the stop signal.
    @Test func theStopSignalIsFollowedBySIGCONT() throws {
        let h = try harness(workers: 1)
        let old = try #require(h.host.children.first)
        _ = h.deploy(h.makeRelease("r1"))
        h.advance(by: .seconds(2))
        let stop = try #require(old.signals.firstIndex(of: h.host.stopSignal), "\(old.signals)")
        #expect(old.signals[(stop + 1)...].first == SIGCONT, "\(old.signals)")
        h.finishOperations()
    }
}
