import BatonCore
@testable import BatonDaemon
import BatonSystem
import Testing

/// `[deploy] strategy = "auto"` decided from the memory figures the host reads.
@Suite struct SupervisorStrategyTests {
    static let mib: UInt64 = 1 << 20

    func harness(available: UInt64) throws -> DaemonHarness {
        let h = try unstarted(available: available)
        try h.start()
        return h
    }

    /// `workers` workers of `footprint` MiB under the auto strategy, on a host of 8 GiB with
    /// `available` free and a commit limit of `commitLimit` (not started).
    func unstarted(
        workers: Int = 2, footprint: UInt64 = 200, available: UInt64, commitLimit: UInt64 = 16384 << 20, overcommit: OvercommitMode = .heuristic
    ) throws -> DaemonHarness {
        let h = try DaemonHarness(workers: workers) { config in
            config.deploy.strategy = .auto
            config.deploy.workerFootprint = footprint * Self.mib
        }
        h.host.fakeMemory.worker = MemorySample(rss: footprint * Self.mib, pss: footprint * Self.mib, uss: footprint * Self.mib * 9 / 10)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: available, commitLimit: commitLimit, committed: 1024 * Self.mib),
            overcommit: overcommit, cgroup: nil)
        return h
    }

    @Test func autoSurgesWhenOneMoreWorkerFits() throws {
        let h = try harness(available: 4096 * Self.mib)
        let client = h.deploy(h.makeRelease("r1"))
        #expect(client.progress.first?.contains(", surge, ") == true && client.progress.first?.contains("(auto: ") == true, "\(client.progress)")
        h.finishOperations()
        #expect(client.reply?.ok == true)
    }

    /// Found by a memory-pressure audit (a 1 GiB cgroup at 96 %): once a replace slot's old
    /// worker drained, the plan made before its new worker was spawned saw that worker's
    /// memory free, did not count it as booting, and surged one more slot into the same room:
    /// two new workers where one fit, and the kernel killed another process.
    @Test func aDrainedReplaceSlotsNewWorkerCountsAsBootingBeforeItIsSpawned() throws {
        let h = try DaemonHarness(workers: 4) { config in
            config.deploy.strategy = .auto
            config.deploy.workerFootprint = 80 * Self.mib
            config.memory.reserve = 0
            // 4 workers of 80 MiB under a 380 MiB budget: no room for a fifth until one drains,
            // then room for one new worker (140 MiB), not two.
            config.memory.budget = .bytes(380 * Self.mib)
        }
        h.host.fakeMemory.worker = MemorySample(rss: 80 * Self.mib, pss: 80 * Self.mib, uss: 80 * Self.mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * Self.mib, available: 4096 * Self.mib, commitLimit: 16384 * Self.mib, committed: 1024 * Self.mib),
            overcommit: .heuristic, cgroup: nil)
        try h.start()
        var mostRunning = 0
        h.host.onSpawn = { [unowned host = h.host] _ in mostRunning = max(mostRunning, host.children.filter(\.isRunning).count) }
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == true, "\(client.progress)")
        #expect(mostRunning <= 4, "workers of 80 MiB alive at once under a budget for 4: \(mostRunning); \(client.progress)")
    }

    /// A limits audit: under `LimitNOFILE=48`, with 6 workers and 32 descriptors open, an auto
    /// surge of 6 failed at its third spawn ("placing descriptors: Too many open files"), 1 of 1,
    /// where 2 at once succeeded. The width counts baton's descriptors now, 3 a worker and 11
    /// more for a start (and one per listening socket); with room for none, the deploy replaces.
    @Test func autoSurgesNoWiderThanBatonsDescriptorsAllow() throws {
        let h = try unstarted(workers: 6, footprint: 20, available: 4096 * Self.mib)
        try h.start()
        var limit = 43
        // 14 of baton's own and 3 per live worker: 32 with the 6 serving.
        h.host.descriptors = { [weak host = h.host] in (14 + 3 * (host?.children.filter(\.isRunning).count ?? 0), limit) }
        var mostRunning = 0
        h.host.onSpawn = { [weak host = h.host] _ in mostRunning = max(mostRunning, host?.children.filter(\.isRunning).count ?? 0) }
        let client = h.deploy(h.makeRelease("r1"))
        let first = client.progress.first ?? ""
        #expect(first.contains(", surge, 1 slot at once (auto: ") && first.contains("descriptors for 1 more (32 of 43 descriptors open)"), "\(client.progress)")
        h.finishOperations()
        #expect(client.reply?.ok == true, "\(client.progress)")
        #expect(mostRunning <= 7, "workers alive at a spawn: \(mostRunning); \(client.progress)")

        limit = 41
        mostRunning = 0
        let second = h.deploy(h.makeRelease("r2"))
        let line = second.progress.first ?? ""
        #expect(
            line.contains(", replace, ") && line.contains("(auto: baton's descriptors leave no room for an extra worker (32 of 41 descriptors open))"),
            "\(second.progress)")
        h.finishOperations()
        #expect(second.reply?.ok == true, "\(second.progress)")
        #expect(mostRunning <= 6, "workers alive at a spawn: \(mostRunning); \(second.progress)")
        // Waiting for a slot in flight keeps the strategy: no "next: surge" then "next: replace"
        // at every slot.
        #expect(!second.progress.contains { $0.hasPrefix("next: ") }, "\(second.progress)")
    }

    /// A limits re-audit (7 of 7): with idle control clients holding baton's descriptors, the
    /// auto deploy replaced (no room for an extra worker), drained a worker, and could start
    /// neither its successor nor the old release again ("placing descriptors: Too many open
    /// files"): degraded, the slot empty for 17 s. A deploy no worker could start for, even after
    /// a drain, is refused before it touches one.
    @Test func aDeployNoWorkerCouldStartForIsRefusedBeforeItDrainsOne() throws {
        let h = try unstarted(workers: 6, footprint: 20, available: 4096 * Self.mib)
        try h.start()
        let before = h.host.children.count
        h.host.descriptors = { (45, 48) }
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        let error = client.reply?.error ?? ""
        #expect(
            error.hasPrefix(
                "deploy failed, nothing changed: baton's descriptors leave no room to start a worker (45 of 48 descriptors open; a start needs 10 free, "
                    + "a drained worker gives back 3): try again once control clients have closed, or raise LimitNOFILE= or ulimit -n"),
            "\(client.progress) \(error)")
        #expect(h.host.children.count == before, "no worker started")
        #expect(h.host.children.filter(\.isRunning).count == 6, "none drained")
        h.host.descriptors = { (38, 48) }
        let again = h.deploy(h.makeRelease("r2"))
        h.finishOperations()
        #expect(again.reply?.ok == true, "\(again.progress)")
    }

    /// A memory audit (2 of 2, workers leaking 30-40 MiB/s in all): the auto width counted the
    /// new workers' footprint but not what the serving workers would grow while they booted;
    /// 3 new workers started beside 3 old ones that kept growing, and the kernel killed two
    /// serving workers. 450 MiB over the reserve: two 200 MiB workers fit beside flat workers,
    /// one beside workers growing 15 MiB/s each (90 MiB over a 1 s replacement and the 2 s window).
    @Test func autoLeavesRoomForTheServingWorkersGrowthDuringAStep() throws {
        let flat = try deployGrown(available: 450, grown: 0, grewAt: .seconds(20), age: .seconds(20))
        #expect(flat.progress.first?.contains("surge, 2 slots at once") == true, "\(flat.progress)")
        let client = try deployGrown(available: 450, grown: 300, grewAt: .seconds(20), age: .seconds(20))
        #expect(client.progress.first?.contains("surge, 1 slot at once") == true, "\(client.progress)")
        #expect(client.reply?.ok == true)
    }

    /// The re-audit after it: a deploy right after a policy restart met workers 2-6 s old
    /// leaking 15 MiB/s each, whose average since ready counted at least 10 s (a fifth of it).
    /// For the width it counts from 2 s: workers 4 s old that grew 24 MiB grow 6 MiB/s, not 2.4.
    @Test func autoCountsAYoungWorkersGrowthAtItsAge() throws {
        // Settled (at 2 s) at 180 MiB of USS; 24 MiB more by 4 s.
        let client = try deployGrown(available: 430, grown: 24, grewAt: .seconds(3), age: .seconds(4))
        #expect(client.progress.first?.contains("surge, 1 slot at once") == true, "\(client.progress)")
        #expect(client.reply?.ok == true)
    }

    /// Two workers of 200 MiB (180 MiB of USS at ready) with `available` MiB free over the
    /// reserve, whose USS is `grown` MiB more from `grewAt` after start on; a deploy at `age`,
    /// finished.
    func deployGrown(available: UInt64, grown: UInt64, grewAt: Duration, age: Duration) throws -> RecordingWaiter {
        let h = try harness(available: (512 + available) * Self.mib)
        h.advance(by: grewAt)
        h.host.fakeMemory.worker = MemorySample(rss: 200 * Self.mib, pss: 200 * Self.mib, uss: (180 + grown) * Self.mib)
        h.advance(by: age - grewAt)
        h.measure()
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        return client
    }

    @Test func autoReplacesWhenNoExtraWorkerFits() throws {
        let h = try harness(available: 100 * Self.mib)
        let client = h.deploy(h.makeRelease("r1"))
        #expect(client.progress.first?.contains(", replace, ") == true && client.progress.first?.contains("(auto: ") == true, "\(client.progress)")
        h.finishOperations()
        #expect(client.reply?.ok == true)
        // replace: never more than one worker per slot.
        #expect(h.host.children.count == 4)
    }

    /// A deploy measured every worker twice on the loop as it began (once to order the slots
    /// by growth, once more for the auto strategy's check): smaps_rollup walks page tables
    /// (about 4 µs per MiB of RSS), so that doubled the time the loop was blocked.
    @Test func deployBeginningMeasuresEachWorkerOnce() throws {
        let h = try harness(available: 4096 * Self.mib)
        let old = h.servingPIDs.compactMap { $0 }
        let before = old.map { h.host.fakeMemory.detailedReads(of: $0) }
        let client = h.deploy(h.makeRelease("r1"))
        #expect(client.progress.first?.contains(", surge, ") == true && client.progress.first?.contains("(auto: ") == true, "\(client.progress)")
        let during = old.map { h.host.fakeMemory.detailedReads(of: $0) }
        #expect(zip(during, before).map { $0 - $1 } == [1, 1])
    }

    /// Two workers of 200 MiB under `vm.overcommit_memory = 2` with 300 MiB of commit headroom
    /// (not started).
    func strictOvercommit() throws -> DaemonHarness {
        try unstarted(available: 4096 * Self.mib, commitLimit: 1324 * Self.mib, overcommit: .strict)
    }

    /// Under `vm.overcommit_memory = 2` preflight's surge must fit the commit limit with the
    /// workers' commit charge (read through the port), not only their footprint.
    @Test func preflightReplacesWhenTheWorkersCommitChargeDoesNotFitUnderStrictOvercommit() throws {
        let h = try strictOvercommit()
        try h.start()
        // The footprint alone (200 MiB) fits the 300 MiB of commit headroom.
        #expect(try h.preflight(release: nil, need: 0).0.strategy == .surge)
        // Each worker's tree has 900 MiB of commit charge: a new one would not fit.
        h.host.fakeMemory.commitCharge = 900 * Self.mib
        let (verdict, _) = try h.preflight(release: nil, need: 0)
        #expect(verdict.strategy == .replace, "\(verdict.summary)")
    }

    /// The deploy's own plan (the rollout planner's figures) counted the workers' commit
    /// charge nowhere: under strict overcommit it surged where `baton preflight` said replace.
    @Test func autoReplacesWhenTheWorkersCommitChargeDoesNotFitUnderStrictOvercommit() throws {
        let h = try strictOvercommit()
        h.host.fakeMemory.commitCharge = 900 * Self.mib
        try h.start()
        let client = h.deploy(h.makeRelease("r1"))
        #expect(client.progress.first?.contains(", replace, ") == true, "\(client.progress)")
        h.finishOperations()
        #expect(client.reply?.ok == true)
    }

    /// The planner runs again at every step of a rollout; the workers' commit charge (a walk
    /// of every worker's maps each) is read once, when the deploy starts, not at every replan.
    @Test func aDeployReadsTheWorkersCommitChargeOnceNotAtEveryReplan() throws {
        let h = try strictOvercommit()
        h.host.fakeMemory.commitCharge = 900 * Self.mib
        try h.start()
        let before = h.host.fakeMemory.commitChargeReads
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == true && client.progress.count > 3, "\(client.progress)")
        #expect(h.host.fakeMemory.commitChargeReads - before == 2, "one read per serving worker at the start")
    }

    /// A policy restart's rollout (a recycle) is planned again at every step too, and the
    /// recycling budget asks the planner at each of them: inside the operation the budget gets
    /// the operation's commit charge. What is left: the first submission's look (the engine's
    /// budget, planned once a pump) and the operation's start, which the second recycle joins:
    /// 2 reads of 2 workers. 6 before the pump planned the budget once: the start's log line
    /// planned it again, before the operation existed.
    @Test func aRecycleReadsTheWorkersCommitChargeOnceForItsOperation() throws {
        let h = try strictOvercommit()
        h.host.fakeMemory.commitCharge = 900 * Self.mib
        try h.start()
        let before = h.host.fakeMemory.commitChargeReads
        h.requestPolicyRestart(slot: 0, reason: .age)
        h.requestPolicyRestart(slot: 1, reason: .age)
        h.finishOperations()
        #expect(h.supervisor.slots.map(\.restarts) == [1, 1])
        #expect(h.host.fakeMemory.commitChargeReads - before <= 4, "\(h.host.fakeMemory.commitChargeReads - before) reads")
    }

    @Test func autoSurgesWhenMemoryIsUnknown() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.strategy = .auto }
        try h.start()
        let client = h.deploy(h.makeRelease("r1"))
        #expect(client.progress.first?.contains(", surge, 1 slot at once (auto: memory unknown)") == true, "\(client.progress)")
    }
}
