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
}
