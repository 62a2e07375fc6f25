import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// A worker's notify socket, with real datagrams from the test process (the fake process table
/// puts it in the worker's tree).
@Suite struct SupervisorNotifyTests {
    /// Sends `text` as one datagram to the unix socket at `path`.
    static func send(_ text: String, to path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(Sockets.connectUnix(fd, path) == 0)
        let bytes = Array(text.utf8)
        #expect(Glibc.send(fd, bytes, bytes.count, 0) == bytes.count)
    }

    /// Found by a hostile-input audit: a datagram over the 4096 bytes read was cut short and
    /// still acted on: "STATUS=<4069 bytes>\nX_BATON_REQUESTS=123456789" counted 12 requests.
    @Test func aMessageThatDidNotFitIsIgnoredWhole() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        let path = try #require(worker.notifyPath)
        try Self.send("STATUS=" + String(repeating: "s", count: 4069) + "\nX_BATON_REQUESTS=123456789", to: path)
        h.advance(by: .zero)
        #expect(worker.requestsServed == nil, "counted from a cut message: \(String(describing: worker.requestsServed))")
        try Self.send("X_BATON_REQUESTS=7", to: path)
        h.advance(by: .zero)
        #expect(worker.requestsServed == 7)
    }

    /// A policy audit: a count past `max_requests` reported while another slot restarted was
    /// dropped (nothing recycles while a slot does not serve) and looked at again only at the
    /// worker's next report: 22,208 against 3,000 for as long as no request came.
    @Test func aCountPastTheLimitReportedWhileASlotRestartsIsRecycledOnceItServes() throws {
        let h = try DaemonHarness(workers: 2) { $0.rolling.maxRequests = 1000 }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.child(try #require(h.supervisor.slots[1].current).pid)?.end(.exited(1))
        h.advance(by: .zero)
        #expect(h.supervisor.slots[1].current == nil, "slot 1 waits out its backoff")
        h.supervisor.requestsReported(worker, "2000", from: worker.pid)
        #expect(h.supervisor.restartsByReason[.maxRequests] == nil)
        h.advance(by: .seconds(5))
        h.finishOperations()
        #expect(h.supervisor.restartsByReason[.maxRequests] == 1)
        #expect(h.supervisor.slots[0].current?.pid != worker.pid)
        #expect(h.allReady)
    }

    /// An apps audit: under gunicorn `-w 2` in a slot, each inner worker reported its own count
    /// (read as 1000, 700, 1050, 750): the slot served about 4,700 requests against
    /// `max_requests 2000`, while the log said 2000. Each process's count is its own; the
    /// worker's is their sum.
    @Test func theCountsOfEachProcessOfTheTreeAddUp() throws {
        let h = try DaemonHarness(workers: 2) { $0.rolling.maxRequests = 2000 }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        let (a, b) = (worker.pid + 1, worker.pid + 2)
        for (pid, count) in [(a, 1000), (b, 700), (a, 1050)] { h.supervisor.requestsReported(worker, "\(count)", from: pid) }
        #expect(worker.requestsServed == 1750)
        #expect(h.supervisor.restartsByReason[.maxRequests] == nil)
        h.supervisor.requestsReported(worker, "1000", from: b)
        #expect(worker.requestsServed == 2050)
        h.advance(by: .seconds(1))
        h.finishOperations()
        #expect(h.supervisor.restartsByReason[.maxRequests] == 1)
        #expect(h.supervisor.slots[0].current?.pid != worker.pid)
    }

    /// A habits audit: `max_requests = 100` with gunicorn (which reports nothing): 73,564
    /// requests later no worker was recycled and no line said why.
    @Test func maxRequestsWithoutAnyCountIsSaidOnce() throws {
        let h = try DaemonHarness(workers: 2) { $0.rolling.maxRequests = 100 }
        try h.start()
        h.supervisor.startMemoryChecks()
        h.advance(by: .seconds(50))
        #expect(h.log.lines(containing: "but no worker reported its served requests").isEmpty, "not before 60 s")
        h.advance(by: .seconds(30))
        let said = h.log.lines(containing: "[rolling] max_requests = 100, but no worker reported its served requests (X_BATON_REQUESTS=N")
        #expect(said.count == 1, "\(said)")
        h.advance(by: .seconds(60))
        #expect(h.log.lines(containing: "but no worker reported its served requests").count == 1, "once")
        // A worker that reports: nothing said.
        let other = try DaemonHarness(workers: 1) { $0.rolling.maxRequests = 100 }
        try other.start()
        other.supervisor.startMemoryChecks()
        let reporter = try #require(other.supervisor.slots[0].current)
        other.supervisor.requestsReported(reporter, "5", from: reporter.pid)
        other.advance(by: .seconds(90))
        #expect(other.log.lines(containing: "but no worker reported its served requests").isEmpty)
        // Nor once idle after a reload (a re-audit: the demo worker reports every 64 requests).
        other.reload()
        other.finishOperations()
        other.advance(by: .seconds(90))
        #expect(other.log.lines(containing: "but no worker reported its served requests").isEmpty)
    }

    /// A pause audit: baton stopped for 1.9 to 2.6 s (a 2 s watchdog) under load replaced 1 to 3
    /// healthy workers (4 of 14 runs): their request reports filled the notify queue while baton
    /// did not read, so their WATCHDOG=1 were dropped. A queue found full counts as a ping; a
    /// worker that then sends nothing is still replaced.
    @Test func aNotifyQueueFoundFullCountsAsAWatchdogPing() throws {
        let h = try DaemonHarness(workers: 1) { $0.readiness.watchdog = .seconds(2) }
        try h.start()
        h.supervisor.startLivenessChecks()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        let path = try #require(worker.notifyPath)
        h.advance(by: .milliseconds(1900))
        for n in 1...Supervisor.notifyQueueLength { try Self.send("X_BATON_REQUESTS=\(n * 64)", to: path) }
        h.advance(by: .zero)
        h.advance(by: .milliseconds(1500))
        #expect(worker.state == .ready, "its pings may have been dropped: it counts from the full queue")
        h.advance(by: .seconds(2))
        #expect(worker.state != .ready, "then nothing: replaced")
        #expect(h.supervisor.restartsByReason[.watchdog] == 1)
    }

    /// A deploy of one worker (`window`, `--timeout timeout`) during which baton is stopped from
    /// 0.1 s for `stopped`: the clock jumps and nothing runs; the new worker sent READY=1 9.7 s
    /// before baton reads it (`meanwhile` runs on it first: it may end it); then the operation
    /// runs to its end.
    static func deployWithAReadyReadLate(
        window: Duration, timeout: String, stopped: Duration, meanwhile: (DaemonHarness, Worker) -> Void = { _, _ in }
    ) throws -> (h: DaemonHarness, deploy: RecordingWaiter, worker: Worker) {
        let h = try DaemonHarness(workers: 1) { $0.deploy.stabilityWindow = window }
        try h.start()
        h.autoReady = { _ in false }
        let deploy = h.deploy(h.makeRelease("r2"), timeout: timeout)
        h.advance(by: .milliseconds(100))
        let worker = try #require(h.supervisor.slots[0].replacement)
        h.clock.set(h.clock.now + stopped)
        try send("READY=1", to: try #require(worker.notifyPath))
        meanwhile(h, worker)
        h.host.wallClockAhead = 9.7
        h.settle()
        h.host.wallClockAhead = 0
        h.finishOperations()
        return (h, deploy, worker)
    }

    /// A crash audit (3 of 3): `kill -STOP` of baton 0.1 s into a deploy with `--timeout 3s`,
    /// `-CONT` 10 s later. Its new worker sent READY=1 at 0.3 s, so its window ended at 0.8 s,
    /// but the window was counted from when baton read it: the deadline came first, and the
    /// deploy was rolled back with exit 4, where README says a deploy whose windows ended before
    /// the deadline while baton was stopped finishes.
    @Test func aStabilityWindowCountsFromAReadyReadLate() throws {
        let (h, deploy, worker) = try Self.deployWithAReadyReadLate(window: .milliseconds(500), timeout: "3s", stopped: .milliseconds(9900))
        #expect(deploy.reply?.ok == true, "\(String(describing: deploy.reply)) \(deploy.progress)")
        #expect(h.supervisor.slots[0].current === worker)
    }

    /// A re-audit (6 of 6): the same with `stability_window = "0s"`: whether the release served
    /// before the deadline was judged when baton read READY=1, and the deploy was rolled back.
    @Test func withoutAStabilityWindowAReadyReadLateCountsFromWhenItWasSent() throws {
        let (_, deploy, _) = try Self.deployWithAReadyReadLate(window: .zero, timeout: "3s", stopped: .milliseconds(9900))
        #expect(deploy.reply?.ok == true, "\(String(describing: deploy.reply))")
    }

    /// The re-audit: a worker that sent READY=1 and crashed inside its window while baton was
    /// stopped was said `stable for 2s` (the rollout failed all the same, on its exit).
    @Test func aWorkerThatExitedWhileBatonWasStoppedIsNotStable() throws {
        let (_, deploy, _) = try Self.deployWithAReadyReadLate(window: .seconds(2), timeout: "30s", stopped: .seconds(10)) { h, worker in
            h.host.child(worker.pid)?.end(.exited(70))
        }
        #expect(deploy.reply?.ok == false)
        #expect(!deploy.progress.contains { $0.contains("stable for") }, "\(deploy.progress)")
    }

    /// A starved audit: baton stopped while it spawned a worker (the spawn waits for the child's
    /// execve) and the 1 s boot ended before it ran again: `ready after 0ms`, the boot time the
    /// boot budget and the reservation go by. It counts from before the spawn.
    @Test func aBootThatEndedWhileTheSpawnWaitedCountsFromBeforeIt() throws {
        let h = try DaemonHarness(workers: 1)
        h.autoReady = { _ in false }
        // baton is stopped for 2 s in the spawn; the worker sent READY=1 1 s into it.
        let clock = h.clock
        h.host.onSpawn = { _ in clock.set(clock.now + .seconds(2)) }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        let sending = wallClockNow()
        try Self.send("READY=1", to: try #require(worker.notifyPath))
        h.host.wallClockAhead = 1
        h.advance(by: .zero)
        let readLate = Duration.seconds(wallClockNow() - sending)
        #expect(worker.state == .ready)
        let boot = try #require(worker.bootTime)
        #expect(boot >= .seconds(1) - readLate && boot <= .seconds(1), "\(boot)")
    }

    /// A pause audit: a READY=1 that baton read 8 s late (baton stopped) made a 1 s boot
    /// `ready after 8.40s`, the boot time the boot budget, the reservation and status go by. The
    /// boot ends when the worker sent it: the kernel's time of the datagram.
    @Test func aReadyReadLateCountsFromWhenItWasSent() throws {
        let h = try DaemonHarness(workers: 1)
        h.autoReady = { _ in false }
        var budgetBoots: [Double] = []
        h.host.cpuTime = { _ in ProcessPriority.CPUTime(seconds: 0.5, waitedSeconds: 0) }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        h.advance(by: .seconds(9))
        // Sent at 1 s, read now: the wall clock is 8 s past the datagram's time.
        let sending = wallClockNow()
        try Self.send("READY=1", to: try #require(worker.notifyPath))
        h.host.wallClockAhead = 8
        h.advance(by: .zero)
        // Less the real time from the send to the read (the datagram is that much older).
        let readLate = Duration.seconds(wallClockNow() - sending)
        #expect(worker.state == .ready)
        let boot = try #require(worker.bootTime)
        #expect(boot >= .seconds(1) - readLate && boot <= .seconds(1), "\(boot)")
        budgetBoots = h.supervisor.bootBudget.shares
        #expect(budgetBoots.count == 1 && budgetBoots[0] >= 0.49, "CPU 0.5 s over a 1 s boot, not over 9 s: \(budgetBoots)")
        // A READY=1 read at once counts as before.
        h.host.wallClockAhead = 0
        h.autoReady = { _ in true }
        h.host.child(worker.pid)?.end(.exited(1))
        h.advance(by: .seconds(1))
        #expect(h.supervisor.slots[0].current?.bootTime == .zero)
    }

    /// A contract audit (8 of 29 starts): a child that sent READY=1 and exited at once was gone
    /// before baton looked it up, and its READY=1 was dropped ("outside worker's tree"), so
    /// the start failed on "not ready". A sender gone with the worker's uid (or root's) counts;
    /// one alive outside the tree still does not, and the warning says what it sent.
    @Test func aReadyFromAChildGoneAlreadyCounts() throws {
        let h = try DaemonHarness(workers: 1)
        h.autoReady = { _ in false }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        let path = try #require(worker.notifyPath)
        // Alive, outside the tree: ignored, and said.
        h.host.fakeProcesses.setStartTime(42, of: getpid())
        try Self.send("READY=1", to: path)
        h.advance(by: .zero)
        #expect(worker.state == .starting)
        #expect(h.log.lines(containing: "outside worker \(worker.pid)'s tree ignored (READY=1)").count == 1, "\(h.log.lines)")
        // Gone (this test's pid is not a process of the fake host's): taken.
        h.host.fakeProcesses.setStartTime(nil, of: getpid())
        h.host.fakeProcesses.forget(getpid())
        try Self.send("READY=1", to: path)
        h.advance(by: .zero)
        #expect(worker.state == .ready)
    }

    /// A contract audit: EXTEND_TIMEOUT_USEC= (an app migrating at boot) was dropped, and the
    /// worker killed at its readiness timeout where systemd would have waited.
    @Test func extendTimeoutHoldsTheReadinessTimeout() throws {
        let h = try DaemonHarness(workers: 1) { $0.readiness.timeout = .seconds(4) }
        h.autoReady = { _ in false }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        let path = try #require(worker.notifyPath)
        h.advance(by: .seconds(3))
        try Self.send("EXTEND_TIMEOUT_USEC=20000000\nSTATUS=migrating", to: path)
        h.advance(by: .zero)
        h.advance(by: .seconds(10))
        #expect(worker.state == .starting, "killed at the 4 s timeout")
        #expect(h.log.lines(containing: "extended its readiness timeout by 20s from now").count == 1)
        try Self.send("READY=1", to: path)
        h.advance(by: .zero)
        #expect(worker.state == .ready)
        // Another worker that extends by less than its timeout is killed at the timeout.
        h.host.child(worker.pid)?.end(.exited(1))
        h.advance(by: .seconds(1))
        let next = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: next.pid)
        try Self.send("EXTEND_TIMEOUT_USEC=1000000", to: try #require(next.notifyPath))
        h.advance(by: .zero)
        h.advance(by: .seconds(4))
        #expect(next.state != .starting && next.state != .ready)
    }

    /// A contract audit: MAINPID=, FDSTORE=1 and the like were dropped with no word.
    @Test func aFieldBatonDoesNotActOnIsSaidOnce() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        let path = try #require(worker.notifyPath)
        try Self.send("MAINPID=4711", to: path)
        try Self.send("MAINPID=4712\nBARRIER=1", to: path)
        h.advance(by: .zero)
        let said = h.log.lines(containing: "worker sent MAINPID=, which baton does not act on")
        #expect(said.count == 1, "\(h.log.lines)")
        #expect(h.log.lines(containing: "BARRIER").isEmpty)
    }

    /// A fuzz audit: a worker sending `STATUS=booting\r\nREADY=1\r\n` was never ready and was
    /// killed at its timeout (Swift splitting the text at "\n" keeps "\r\n" whole), where
    /// systemd splits a message at LF and CR.
    @Test func crlfAndCRSeparateFieldsAsLF() throws {
        let h = try DaemonHarness(workers: 1) { $0.readiness.timeout = .seconds(4) }
        h.autoReady = { _ in false }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        try Self.send("STATUS=booting\r\nREADY=1\r\n", to: try #require(worker.notifyPath))
        h.advance(by: .zero)
        #expect(worker.state == .ready)
        #expect(worker.statusText == "booting")
        #expect(WorkerContract.notifyFields(Array("A=1\rB=2\n\nC=3".utf8)) == ["A=1", "B=2", "C=3"])
    }
}
