import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// Invariant 9 (docs/ARCHITECTURE.md): the loop never walks the workers' page tables. Every
/// operation's start read every worker's smaps_rollup on the loop (a deploy ordering its
/// slots by growth, the first step's width; a dry run twice, a roll for the reservation and
/// its operation twice): about 1 s of CPU for 256 workers of 60 MiB, during which no control
/// request, signal or worker event was handled.
@Suite struct SupervisorMeasureTests {
    static let mib: UInt64 = 1 << 20

    /// Three workers whose footprints settled (the footprint tracker reads a new worker's
    /// tree on the loop until then: one tree, not every worker's).
    func started() throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 3) { $0.deploy.strategy = .auto }
        h.host.fakeMemory.worker = MemorySample(rss: 30 * Self.mib, pss: 20 * Self.mib, uss: 10 * Self.mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 16384 * Self.mib, committed: 1024 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        try h.start()
        h.advance(by: FootprintTracker.sampleInterval * 20)
        return h
    }

    /// Detailed reads of the serving workers' trees made on the loop since `baseline`.
    func readsOnLoop(_ h: DaemonHarness, since baseline: [pid_t: Int]) -> Int {
        baseline.map { pid, before in h.host.fakeMemory.detailedReadsOnLoop(of: pid) - before }.reduce(0, +)
    }

    func baseline(_ h: DaemonHarness) -> [pid_t: Int] {
        Dictionary(uniqueKeysWithValues: h.servingPIDs.compactMap { $0 }.map { ($0, h.host.fakeMemory.detailedReadsOnLoop(of: $0)) })
    }

    @Test(arguments: ["deploy", "rollback", "reload", "dry run", "preflight", "policy restart"])
    func anOperationsStartReadsNoWorkersMemoryOnTheLoop(_ request: String) throws {
        let h = try started()
        if request == "rollback" {
            h.deploy(h.makeRelease("r1"))
            h.finishOperations()
            h.advance(by: FootprintTracker.sampleInterval * 20)
        }
        let before = baseline(h)
        let measured = before.keys.map { h.host.fakeMemory.detailedReads(of: $0) }.reduce(0, +)
        var reply: ControlReply?
        switch request {
        case "deploy": reply = h.deploy(h.makeRelease("r2")).replyAfter(h)
        case "rollback": reply = h.rollback().replyAfter(h)
        case "reload": reply = h.reload().replyAfter(h)
        case "dry run":
            let client = RecordingWaiter()
            h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: h.makeRelease("r2"), dryRun: true), waiter: client, uid: 0)
            h.awaitReads()
            reply = client.reply
        case "preflight":
            _ = try h.preflight()
        default:
            h.requestPolicyRestart(slot: 1, reason: .age)
            h.finishOperations()
        }
        #expect(reply.map { $0.ok == true } ?? true, "\(String(describing: reply))")
        #expect(readsOnLoop(h, since: before) == 0, "the loop read the workers' smaps_rollup")
        // They were measured all the same, off the loop.
        #expect(before.keys.map { h.host.fakeMemory.detailedReads(of: $0) }.reduce(0, +) >= measured + before.count)
    }

    /// Under `vm.overcommit_memory = 2` the workers' commit charge (a walk of each one's maps)
    /// was read on the loop at each operation's start, preflight and metrics scrape.
    @Test func theCommitChargeIsReadOffTheLoop() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.strategy = .auto }
        h.host.fakeMemory.worker = MemorySample(rss: 200 * Self.mib, pss: 200 * Self.mib, uss: 180 * Self.mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 2048 * Self.mib, committed: 1748 * Self.mib),
            overcommit: .strict, cgroup: nil)
        h.host.fakeMemory.commitCharge = 900 * Self.mib
        try h.start()
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == true)
        #expect(client.progress.first?.contains(", replace, ") == true, "the commit charge was used: \(client.progress)")
        _ = try h.preflight()
        _ = h.supervisor.metricsSnapshot()
        #expect(h.host.fakeMemory.commitChargeReads > 0)
        #expect(h.host.fakeMemory.commitChargeReadsOnLoop == 0)
    }

    /// A deploy of a new release requested while every memory read is stuck (the test clears
    /// `stuck`), its request handled: it waits for its read.
    func deployWhileTheReadIsStuck(_ h: DaemonHarness, timeout: String? = nil) -> RecordingWaiter {
        h.host.fakeMemory.stuck.withLock { $0 = true }
        let client = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: h.makeRelease("r1"), timeout: timeout), waiter: client, uid: 0)
        #expect(h.loop.pump() != nil)
        return client
    }

    /// A read that does not come back (smaps_rollup stuck while the host stalls) holds the
    /// deploy back for ``Supervisor/measureWait`` at most: it then starts on the last samples.
    @Test func aDeployWhoseMemoryReadIsStuckStartsOnTheLastSamples() throws {
        let h = try started()
        let client = deployWhileTheReadIsStuck(h)
        #expect(h.supervisor.operation?.phase == .queued, "it waits for the read first")
        h.clock.set(h.clock.now + Supervisor.measureWait)
        #expect(h.loop.pump() != nil)
        #expect(h.supervisor.operation?.phase == .rollingOut)
        #expect(client.progress.first?.hasPrefix("deploy of ") == true, "\(client.progress)")
        h.host.fakeMemory.stuck.withLock { $0 = false }
        h.finishOperations()
        #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
    }

    /// A client deadline that passes while the deploy waits for its read ends it with exit 4
    /// and nothing changed; it never starts later without a deadline.
    @Test func aDeadlineThatPassesWhileTheReadRunsEndsTheDeployUnstarted() throws {
        let h = try started()
        let serving = h.servingPIDs
        let client = deployWhileTheReadIsStuck(h, timeout: "1s")
        h.clock.set(h.clock.now + .seconds(1))
        #expect(h.loop.pump() != nil)
        let reply = try #require(client.reply)
        #expect(reply.code == 4)
        #expect(reply.error?.hasSuffix("deadline of 1s passed before it started: nothing changed") == true, "\(String(describing: reply.error))")
        h.host.fakeMemory.stuck.withLock { $0 = false }
        h.settle()
        h.finishOperations()
        #expect(h.servingPIDs == serving)
        #expect(h.supervisor.operation == nil)
        // timed-out (a re-audit: recorded failed, `deploy --attach` then exited 1, not 4).
        #expect(h.supervisor.history.last?.outcome == .timedOut)
        let attach = RecordingWaiter()
        h.supervisor.attach(attach)
        #expect(attach.reply?.code == 4, "\(String(describing: attach.reply))")
        // The next deploy runs.
        let next = h.deploy(h.makeRelease("r2"))
        h.finishOperations()
        #expect(next.reply?.ok == true)
    }

    /// A re-audit (2 of 2): SIGTERM while a deploy waited for its memory read wrote its history
    /// line with a start at 1970-01-01 and baton's uptime as its duration.
    @Test func aStopWhileTheReadRunsRecordsWhenTheDeployBegan() throws {
        let h = try started()
        let client = deployWhileTheReadIsStuck(h)
        h.supervisor.beginShutdown()
        h.host.fakeMemory.stuck.withLock { $0 = false }
        let entry = try #require(h.supervisor.history.last)
        #expect(entry.outcome == .interrupted)
        #expect(entry.startedAt > 1_000_000_000, "started at \(entry.startedAt)")
        #expect(entry.duration < 1, "\(entry.duration) s")
        #expect(client.reply?.ok == false)
    }
}

extension RecordingWaiter {
    /// The reply once `h` ran every operation to its end.
    func replyAfter(_ h: DaemonHarness) -> ControlReply? {
        h.finishOperations()
        h.settle()
        return reply
    }
}

/// A hardening audit: under systemd's `ProcSubset=pid` /proc/meminfo is hidden; the threshold
/// rules and the cgroup's limit were off, `baton status` lost its memory line, and nothing
/// said why.
@Suite struct HostMemoryUnreadableTests {
    @Test func anUnreadableMeminfoIsSaidOnceAndShownInStatusUntilItIsReadable() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.supervisor.startMemoryChecks()
        h.advance(by: .seconds(12))
        let said = h.log.lines(containing: "cannot read the host's memory figures")
        #expect(said.count == 1, "\(said)")
        #expect(said.first?.contains("/proc/meminfo: No such file or directory (errno 2) (systemd's ProcSubset=pid hides it") == true, "\(said)")
        let problems = h.supervisor.statusReport(memory: [:]).problems ?? []
        #expect(problems.contains { $0.hasPrefix("cannot read the host's memory figures: /proc/meminfo") }, "\(problems)")
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 << 20, available: 4096 << 20, commitLimit: 16384 << 20, committed: 1024 << 20), overcommit: .heuristic,
            cgroup: nil)
        h.advance(by: .seconds(12))
        #expect(h.log.lines(containing: "the host's memory figures are readable again").count == 1)
        #expect(h.supervisor.statusReport(memory: [:]).problems == nil)
        #expect(MemoryReadError.unreadable(path: "/proc/meminfo", errno: EACCES).hint.isEmpty)
    }
}
