import BatonCore
import FoundationEssentials
import Testing

private let mib: UInt64 = 1 << 20

// Recorded on the build machine (Linux 6.18): a python3 child forked from a parent that held
// 8 MiB of written bytes, read before the child wrote anything (its pages are the parent's,
// shared copy-on-write).

/// /proc/PID/smaps_rollup of that forked child, verbatim.
private let forkedChildSmapsRollup = """
    5589706a3000-7fff739a1000 ---p 00000000 00:00 0                          [rollup]
    Rss:               18744 kB
    Pss:                9349 kB
    Pss_Dirty:          8236 kB
    Pss_Anon:           8236 kB
    Pss_File:           1113 kB
    Pss_Shmem:             0 kB
    Shared_Clean:       3036 kB
    Shared_Dirty:      14944 kB
    Private_Clean:         0 kB
    Private_Dirty:       764 kB
    Referenced:         3796 kB
    Anonymous:         15708 kB
    KSM:                   0 kB
    LazyFree:              0 kB
    AnonHugePages:         0 kB
    ShmemPmdMapped:        0 kB
    FilePmdMapped:         0 kB
    Shared_Hugetlb:        0 kB
    Private_Hugetlb:       0 kB
    Swap:                  0 kB
    SwapPss:               0 kB
    Locked:                0 kB

    """

/// /proc/PID/ksm_stat of that child: marked mergeable (PR_SET_MEMORY_MERGE in its parent,
/// inherited over fork) while the host's ksmd was off, so nothing merged.
private let mergeableUnmergedKSMStat = """
    ksm_rmap_items 0
    ksm_zero_pages 0
    ksm_merging_pages 0
    ksm_process_profit 0
    ksm_merge_any: yes
    ksm_mergeable: yes

    """

/// The same file of a process whose pages ksmd merged: written by hand in the kernel's format
/// (not recorded), figures like a 50 MiB worker's: profit = merging pages × 4096 − rmap items × 64.
private let mergedKSMStat = """
    ksm_rmap_items 12850
    ksm_zero_pages 0
    ksm_merging_pages 12790
    ksm_process_profit 51564000
    ksm_merge_any: yes
    ksm_mergeable: yes

    """

/// A process of an unmarked app: ksmd scans it (rmap items cost) but merged little.
private let unprofitableKSMStat =
    "ksm_rmap_items 3000\nksm_zero_pages 0\nksm_merging_pages 10\nksm_process_profit -151040\nksm_merge_any: no\nksm_mergeable: yes\n"

@Suite("Shared memory and KSM")
struct SharedMemoryTests {
    @Test("smaps_rollup: shared = Shared_Clean + Shared_Dirty, USS = the private part")
    func sharedOfAForkedChild() throws {
        let m = try #require(ProcParsers.smapsRollup(forkedChildSmapsRollup))
        #expect(m.shared == (3036 + 14944) * 1024)
        #expect(m.uss == 764 * 1024)
        #expect(m.rss == 18744 * 1024)
        // Every resident page is either private or shared.
        #expect(m.shared + m.uss == m.rss)
        let minimal = try #require(ProcParsers.smapsRollup("Rss:  100 kB\nPss:  40 kB\n"))
        #expect(minimal.shared == 0)
    }

    @Test func samplesSumSharedAndKSM() {
        let a = MemorySample(rss: 10, pss: 5, uss: 2, shared: 8, ksm: KSMStat(rmapItems: 1, mergingPages: 2, profit: 100, mergeAny: true))
        let b = MemorySample(rss: 20, pss: 7, uss: 3, shared: 17, ksm: KSMStat(rmapItems: 3, mergingPages: 4, profit: -40, mergeAny: true))
        let sum = a + b
        #expect(sum.shared == 25)
        #expect(sum.ksm == KSMStat(rmapItems: 4, mergingPages: 6, profit: 60, mergeAny: true))
        #expect((a + MemorySample(rss: 1, pss: 1, uss: 1)).shared == nil)
        #expect((a + MemorySample(rss: 1, pss: 1, uss: 1)).ksm == a.ksm)
        #expect(a.ksm.map { $0 + KSMStat(mergeAny: false) }?.mergeAny == false)
    }

    @Test func ksmStatOfAMarkedProcess() throws {
        let unmerged = try #require(KSMStat.parse(mergeableUnmergedKSMStat))
        #expect(unmerged == KSMStat(mergeAny: true))
        let merged = try #require(KSMStat.parse(mergedKSMStat))
        #expect(merged == KSMStat(rmapItems: 12850, mergingPages: 12790, zeroPages: 0, profit: 51_564_000, mergeAny: true))
        let unprofitable = try #require(KSMStat.parse(unprofitableKSMStat))
        #expect(unprofitable.profit == -151_040 && !unprofitable.mergeAny && unprofitable.rmapItems == 3000)
    }

    @Test(arguments: ["", "ksm_rmap_items 3\n", "ksm_process_profit lots\n", "ksm_process_profit 99999999999999999999\n"])
    func ksmStatRejectsWhatIsNotOne(text: String) {
        #expect(KSMStat.parse(text) == nil)
    }

    @Test("memory.mergeable messages: the exact lines baton logs and status shows")
    func messages() {
        #expect(
            MemoryMerge.refused(errno: 22, errorText: "Invalid argument")
                == "memory.mergeable: this kernel cannot mark processes mergeable (PR_SET_MEMORY_MERGE needs Linux 6.4); workers run unmerged")
        #expect(
            MemoryMerge.refused(errno: 1, errorText: "Operation not permitted")
                == "memory.mergeable: the kernel refused PR_SET_MEMORY_MERGE (Operation not permitted); workers run unmerged")
        #expect(
            MemoryMerge.daemonNote(run: "0\n")
                == "memory.mergeable: the host's KSM daemon is off (/sys/kernel/mm/ksm/run = 0): nothing will be merged; enable it with: echo 1 > /sys/kernel/mm/ksm/run"
        )
        #expect(MemoryMerge.daemonNote(run: "1\n") == nil)
        #expect(MemoryMerge.daemonNote(run: "2\n")?.contains("is off (/sys/kernel/mm/ksm/run = 2)") == true)
        #expect(MemoryMerge.daemonNote(run: nil)?.contains("this kernel has no KSM") == true)
    }

    @Test("config: [memory] mergeable is a boolean, false by default")
    func config() throws {
        #expect(try parseConfig(minimalApp).memory.mergeable == false)
        #expect(try parseConfig(minimalApp + "[memory]\nmergeable = true\n").memory.mergeable == true)
        #expect(
            configFailure(minimalApp + "[memory]\nmergeable = \"yes\"\n")
                == "/etc/baton/shop.toml:7: memory.mergeable: expected a boolean, got a string")
    }

    @Test("status: SHARED next to USS; the KSM column and the ksmd note only with memory.mergeable")
    func statusTable() throws {
        let worker = WorkerStatus(
            slot: 0, pid: 10, state: "ready", release: "/r", generation: 1, rssBytes: 60 * mib, pssBytes: 40 * mib, ussBytes: 20 * mib)
        var report = StatusReport(app: "a", pid: 1, state: "running", release: "/r", listeners: [], slots: 1, summary: "1/1", workers: [worker])
        report.workers[0].sharedBytes = 40 * mib
        var lines = report.table(now: 0).split(separator: "\n").map(String.init)
        #expect(lines[3].hasPrefix("SLOT  PID  STATE  AGE  RSS    PSS    USS    SHARED  MEM  LEAK/h"), "\(lines[3])")
        #expect(lines[4].contains("60.0M  40.0M  20.0M  40.0M   -  "), "\(lines[4])")
        #expect(!lines[3].contains("KSM"))

        report.workers[0].ksmProfitBytes = 12 * Int64(mib)
        report.workers[0].ksmMergingPages = 3100
        report.ksm = KSMStatus(run: "0", notes: [MemoryMerge.daemonNote(run: "0")!])
        lines = report.table(now: 0).split(separator: "\n").map(String.init)
        #expect(lines[3] == "note: " + MemoryMerge.daemonNote(run: "0")!)
        #expect(lines[4].hasPrefix("SLOT  PID  STATE  AGE  RSS    PSS    USS    SHARED  KSM    MEM  LEAK/h"), "\(lines[4])")
        #expect(lines[5].contains("20.0M  40.0M   12.0M  -  "), "\(lines[5])")
        report.workers[0].ksmProfitBytes = -151_040
        #expect(report.table(now: 0).contains("40.0M   -0.1M  "))

        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        #expect(json.contains(#""shared_bytes":41943040"#), "\(json)")
        #expect(json.contains(#""ksm_profit_bytes":-151040"#), "\(json)")
        #expect(json.contains(#""ksm_merging_pages":3100"#), "\(json)")
        #expect(json.contains(#""ksm":{"#), "\(json)")
        #expect(try JSONDecoder().decode(StatusReport.self, from: Data(json.utf8)) == report)
    }

    @Test("the policy picks the victim by private memory (USS), not by RSS, PSS or shared pages")
    func victimByPrivateMemory() {
        // Slot 0: a forked-style worker, large RSS and PSS from shared pages, small USS.
        // Slot 1: an exec'd worker with less RSS and PSS but more private memory.
        let workers = [
            RestartPolicy.Worker(slot: 0, pid: 100, startedAt: .zero, memory: MemorySample(rss: 900 * mib, pss: 500 * mib, uss: 100 * mib, shared: 800 * mib)),
            RestartPolicy.Worker(slot: 1, pid: 101, startedAt: .zero, memory: MemorySample(rss: 400 * mib, pss: 400 * mib, uss: 390 * mib, shared: 10 * mib)),
        ]
        var policy = RestartPolicy(settings: RestartPolicy.Settings(workers: 2, threshold: 0.5))
        let tick = RestartPolicy.Tick(now: .seconds(3600), workers: workers, budget: EffectiveBudget(bytes: 1000 * mib, source: .memTotal))
        guard case .replace(let slot, let reason, _)? = policy.tick(tick) else {
            Issue.record("no decision")
            return
        }
        #expect(slot == 1)
        #expect(reason == .memoryThreshold)
        var limited = RestartPolicy(settings: RestartPolicy.Settings(workers: 2, workerLimit: 300 * mib))
        guard case .replace(let limitedSlot, .workerLimit, _)? = limited.tick(tick) else {
            Issue.record("no worker-limit decision")
            return
        }
        #expect(limitedSlot == 1)
    }

    @Test("deploys and roll-ahead restart the workers whose private memory grew most first")
    func rollAheadOrderByPrivateGrowth() {
        let order = RollAhead.order([
            WorkerGrowth(slot: 0, pid: 10, ussAtReady: 100 * mib, ussNow: 110 * mib),
            WorkerGrowth(slot: 1, pid: 11, ussAtReady: 20 * mib, ussNow: 90 * mib),
            WorkerGrowth(slot: 2, pid: 12, ussAtReady: 50 * mib, ussNow: 50 * mib),
        ])
        #expect(order.map(\.slot) == [1, 0, 2])
    }
}
