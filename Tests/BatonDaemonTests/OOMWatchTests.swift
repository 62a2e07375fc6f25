import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// Kernel OOM kills in baton's cgroup, on the fake port: the counter and the kernel log are the
/// test's (`FakeOOM`), the workers' trees the fake process table's. No process, no sleep.
@Suite struct OOMWatchTests {
    func harness() throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 2)
        h.host.oom = FakeOOM()
        try h.start()
        return h
    }

    @Test func aKilledDescendantIsCountedForItsSlotWhichIsReplaced() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        let slot = h.supervisor.slots[1]
        let top = try #require(slot.current)
        let child = top.pid + 100_000
        h.host.fakeProcesses.add([child], to: top.pid)
        h.supervisor.startOOMWatch()
        oom.kill(child, comm: "ruby")
        h.advance(by: OOMWatch.pollInterval)
        h.finishOperations()
        #expect(h.supervisor.memoryMonitor.oom.tracker.total == 1)
        #expect(h.supervisor.memoryMonitor.oom.tracker.bySlot == [1: 1])
        #expect(h.supervisor.restartsByReason[.oom] == 1)
        #expect(top.state == .exited && slot.current?.state == .ready && slot.current?.pid != top.pid)
        #expect(h.supervisor.slots[0].restarts == 0)
        #expect(h.supervisor.statusReport(memory: [:]).oom?.kills == 1)
    }

    @Test func aWorkerTheKernelKilledRestartsWithReasonOOM() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        let slot = h.supervisor.slots[0]
        let top = try #require(slot.current)
        h.supervisor.startOOMWatch()
        oom.kill(top.pid, comm: "ruby")
        h.host.child(top.pid)?.end(.signaled(SIGKILL))
        h.advance(by: .zero)
        #expect(slot.lastRestartReason == RestartCause(.oom))
        #expect(h.supervisor.memoryMonitor.oom.tracker.bySlot == [0: 1])
        #expect(h.supervisor.restartsByReason[.oom] == 1 && h.supervisor.restartsByReason[.crash] == nil)
    }

    /// Found by a memory-pressure audit: a new release's worker the kernel killed failed the
    /// deploy as "exited after becoming ready (signal 9)", which blames the release.
    @Test func aNewReleasesWorkerTheKernelKilledFailsTheDeployAsAnOOMKill() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        h.supervisor.startOOMWatch()
        let release = h.makeRelease("r1")
        let client = h.deploy(release)
        h.advance(by: .zero)
        let canary = try #require(h.supervisor.slots.compactMap(\.current).first { $0.spec.release == release && $0.state == .ready })
        oom.kill(canary.pid, comm: "ruby")
        h.host.child(canary.pid)?.end(.signaled(SIGKILL))
        h.finishOperations()
        #expect(client.reply?.ok == false)
        #expect(
            client.reply?.error?.contains("pid \(canary.pid) was killed by the kernel's OOM killer after becoming ready") == true,
            "\(String(describing: client.reply))")
    }

    /// Found by the same audit: a serving worker the kernel killed while a rollout of its own
    /// release ran (a reload, a policy restart) was restarted and counted as a crash.
    @Test func aServingWorkerKilledDuringARolloutOfItsOwnReleaseRestartsWithReasonOOM() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        h.supervisor.startOOMWatch()
        h.autoReady = { _ in false }
        h.reload()
        h.advance(by: .zero)
        #expect(h.supervisor.operation != nil)
        let waiting = try #require(h.supervisor.slots.first { $0.replacement == nil })
        let victim = try #require(waiting.current)
        oom.kill(victim.pid, comm: "ruby")
        h.host.child(victim.pid)?.end(.signaled(SIGKILL))
        h.advance(by: .zero)
        #expect(waiting.lastRestartReason == RestartCause(.oom))
        #expect(h.supervisor.restartsByReason[.oom] == 1 && h.supervisor.restartsByReason[.crash] == nil)
    }

    /// A memory audit (5 times in 3 runs): a process the kernel killed in the tree of a slot's
    /// *draining* worker (a gunicorn master's worker, forked as it drained) was blamed on the
    /// slot's fresh worker ("(worker pid N); the slot will be replaced"), which was then
    /// recycled for nothing.
    @Test func aKillInADrainingWorkersTreeReplacesNothing() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        h.supervisor.startOOMWatch()
        let old = try #require(h.supervisor.slots[1].current)
        h.host.child(old.pid)?.ignoresStopSignal = true
        let child = old.pid + 100_000
        h.host.fakeProcesses.add([child], to: old.pid)
        h.deploy(h.makeRelease("r1"))
        for _ in 0..<200 where old.state != .draining { h.advance(by: .milliseconds(50)) }
        #expect(old.state == .draining)
        let fresh = try #require(h.supervisor.slots[1].current)
        #expect(fresh.pid != old.pid && fresh.state == .ready)
        h.advance(by: OOMWatch.pollInterval)
        oom.kill(child, comm: "python3")
        h.advance(by: OOMWatch.pollInterval)
        h.advance(by: OOMWatch.pollInterval)
        h.finishOperations()
        #expect(h.supervisor.memoryMonitor.oom.tracker.total == 1)
        #expect(h.supervisor.restartsByReason[.oom] == nil)
        #expect(h.supervisor.slots[1].current?.pid == fresh.pid, "the fresh worker was replaced")
    }

    /// A re-audit saw the poll read `/proc/N/task/N/children` of every worker's tree on the
    /// loop, every second.
    @Test func theTreesAreWalkedOffTheLoop() throws {
        let h = try harness()
        h.supervisor.startOOMWatch()
        for _ in 0..<3 { h.advance(by: OOMWatch.pollInterval) }
        #expect(h.host.fakeProcesses.treeWalksOnLoop == 0)
        #expect(h.supervisor.memoryMonitor.oom.trees.count == 2, "\(h.supervisor.memoryMonitor.oom.trees)")
    }
}

extension OOMWatchTests {
    /// A memory audit (2 of 2): serving workers the kernel killed while a deploy ran (25 failed
    /// requests) left no trace in its output, which said "deploy finished: 4 workers …" (exit
    /// 0, history "succeeded"), or, for a deploy that failed, "nothing changed: the old
    /// workers keep serving". Now its progress, its final line and history name them.
    @Test func aServingWorkerKilledDuringADeployIsInItsOutputAndHistory() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        h.supervisor.startOOMWatch()
        h.autoReady = { _ in false }
        let client = h.deploy(h.makeRelease("r1"), strategy: "replace")
        h.advance(by: .zero)
        let waiting = try #require(h.supervisor.slots.first { $0.replacement == nil && $0.current?.state == .ready })
        let victim = try #require(waiting.current)
        oom.kill(victim.pid, comm: "ruby")
        h.host.child(victim.pid)?.end(.signaled(SIGKILL))
        h.autoReady = { _ in true }
        h.finishOperations()
        let reply = try #require(client.reply)
        #expect(reply.ok == true)
        let line = "the kernel's OOM killer killed 1 worker process meanwhile (slot \(waiting.index): pid \(victim.pid))"
        #expect(reply.message?.hasSuffix("; " + line) == true, "\(reply)")
        #expect(client.progress.contains { $0.contains("killed pid \(victim.pid) (ruby), a worker this deploy did not start") }, "\(client.progress)")
        #expect(h.supervisor.history.last?.detail == line)

        // A deploy that fails: not "nothing changed".
        let bad = h.makeRelease("bad")
        var canary: FakeChild?
        h.host.onSpawn = { child in if child.release == bad { canary = child } }
        h.autoReady = { $0.release != bad }
        let failing = h.deploy(bad, strategy: "surge")
        h.advance(by: .zero)
        let other = try #require(h.supervisor.slots.compactMap(\.current).first { $0.state == .ready && $0.spec.release != bad })
        oom.kill(other.pid, comm: "ruby")
        h.host.child(other.pid)?.end(.signaled(SIGKILL))
        h.advance(by: .zero)
        try #require(canary).end(.exited(3))
        h.finishOperations()
        let error = failing.reply?.error ?? ""
        #expect(!error.contains("nothing changed") && error.contains("the old workers keep serving; the kernel's OOM killer killed 1"), "\(error)")
        // In history too (a re-audit: 4 of 4 failed operations had it in their line only).
        #expect(
            h.supervisor.history.last?.detail?.hasSuffix("; the kernel's OOM killer killed 1 worker process meanwhile (slot \(other.slot): pid \(other.pid))")
                == true, "\(String(describing: h.supervisor.history.last?.detail))")
    }
}

extension OOMWatchTests {
    /// A memory audit: `deploy --strategy surge` where no surge fitted got the CI build in
    /// baton's cgroup killed (`not in any worker's process tree`), and the deploy said only
    /// "deploy finished: 4 workers …", history "succeeded" with no word.
    @Test func aProcessOutsideTheWorkersKilledDuringADeployIsInItsOutput() throws {
        let h = try harness()
        let oom = try #require(h.host.oom)
        h.supervisor.startOOMWatch()
        h.autoReady = { _ in false }
        let client = h.deploy(h.makeRelease("r1"), strategy: "replace")
        h.advance(by: .zero)
        oom.kill(987_654, comm: "cc1plus")
        h.advance(by: OOMWatch.pollInterval)
        h.autoReady = { _ in true }
        h.finishOperations()
        let reply = try #require(client.reply)
        #expect(reply.ok == true)
        let line = "the kernel's OOM killer killed 1 process meanwhile (outside the workers: pid 987654)"
        #expect(reply.message?.hasSuffix("; " + line) == true, "\(reply)")
        #expect(client.progress.contains { $0.contains("killed pid 987654 (cc1plus), not in any worker's process tree") }, "\(client.progress)")
        #expect(h.supervisor.history.last?.detail == line)
    }

    /// A memory audit (4 of 4): a release whose new workers the kernel killed during start was
    /// planned again with the old release's footprint (61 MiB for workers of 250 MiB), a surge
    /// of 3 at every attempt, and preflight said it fit. Its footprint is unknown now, so the
    /// next deploy of it replaces, until one of its boots settles.
    @Test func aReleaseWhoseNewWorkerWasKilledDuringStartReplacesNextTime() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.strategy = .auto }
        let oom = FakeOOM()
        h.host.oom = oom
        let mib: UInt64 = 1 << 20
        h.host.fakeMemory.worker = MemorySample(rss: 20 * mib, pss: 20 * mib, uss: 18 * mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * mib, available: 4096 * mib, commitLimit: 16384 * mib, committed: 1024 * mib),
            overcommit: .heuristic, cgroup: nil)
        try h.start()
        h.advance(by: .seconds(5))
        h.supervisor.startOOMWatch()
        let big = h.makeRelease("big")
        #expect(try h.preflight(release: big).0.strategy == .surge)
        h.autoReady = { $0.release != big }
        let first = h.deploy(big)
        h.advance(by: .zero)
        #expect(first.progress.first?.contains(", surge, ") == true, "\(first.progress)")
        let starting = try #require(h.supervisor.slots.compactMap(\.replacement).first { $0.state == .starting })
        oom.kill(starting.pid, comm: "big")
        h.host.child(starting.pid)?.end(.signaled(SIGKILL))
        h.finishOperations()
        #expect(first.reply?.ok == false)

        let (verdict, report) = try h.preflight(release: big)
        #expect(verdict.strategy == .replace && report.footprintBytes == nil)
        #expect(verdict.summary.hasSuffix("(the kernel's OOM killer took a new worker of \(big) before its footprint settled)"), "\(verdict.summary)")
        h.autoReady = { _ in true }
        let second = h.deploy(big)
        h.finishOperations()
        #expect(second.progress.first?.contains(", replace, ") == true, "\(second.progress)")
        #expect(second.reply?.ok == true)
        // Its boots settled since: known again.
        h.advance(by: .seconds(5))
        #expect(try h.preflight(release: big).1.footprintBytes == 20 * mib)
    }
}
