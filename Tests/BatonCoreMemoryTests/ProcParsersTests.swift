import BatonCore
import Testing

// Fixtures recorded on the build machine (Linux 6.18): a python3 that blocked
// SIGHUP, SIGTERM and SIGCHLD and ignored SIGINT, then printed its own files.

/// /proc/PID/stat of that python3, verbatim.
private let pythonStat = "6757 (python3)" + statTail

/// Everything after the command name.
private let statTail =
    " R 6755 6755 4709 0 -1 4194304 1047 0 0 0 0 0 0 0 20 0 1 0 399931 14426112 2281 18446744073709551615 4321280 7148169 140726596958352 0 0 0 81921 16781314 0 0 0 0 17 1 0 0 0 0 0 9723336 11027064 131948544 140726596962699 140726596963033 140726596963033 140726596964327 0\n"

/// The same line with comm replaced by one a process can really set (15
/// bytes, the kernel's limit): spaces and parentheses, including ") S 1 ".
private func statLine(comm: String) -> String {
    "6757 (\(comm))" + statTail
}

/// /proc/PID/statm of that python3.
private let pythonStatm = "3522 2296 1399 691 0 1257 0\n"

/// /proc/PID/smaps_rollup of that python3.
private let pythonSmapsRollup = """
    00400000-7ffd76d29000 ---p 00000000 00:00 0                              [rollup]
    Rss:                9184 kB
    Pss:                7290 kB
    Pss_Dirty:          3588 kB
    Pss_Anon:           3588 kB
    Pss_File:           3702 kB
    Pss_Shmem:             0 kB
    Shared_Clean:       2280 kB
    Shared_Dirty:          0 kB
    Private_Clean:      3316 kB
    Private_Dirty:      3588 kB
    Referenced:         9184 kB
    Anonymous:          3588 kB
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

/// /proc/PID/status of that python3 (tabs as the kernel writes them).
private let pythonStatus = """
    Name:\tpython3
    Umask:\t0022
    State:\tR (running)
    Tgid:\t6757
    Ngid:\t0
    Pid:\t6757
    PPid:\t6755
    TracerPid:\t0
    Uid:\t0\t0\t0\t0
    Gid:\t0\t0\t0\t0
    FDSize:\t256
    Groups:\t
    NStgid:\t6757
    NSpid:\t6757
    NSpgid:\t6755
    NSsid:\t4709
    Kthread:\t0
    VmPeak:\t   14088 kB
    VmSize:\t   14088 kB
    VmRSS:\t    9184 kB
    Threads:\t1
    SigQ:\t1/96365
    SigPnd:\t0000000000000000
    ShdPnd:\t0000000000000000
    SigBlk:\t0000000000014001
    SigIgn:\t0000000001001002
    SigCgt:\t0000000000000000
    CapInh:\t0000000000000000
    CapPrm:\t000001fffeffffff
    CapEff:\t000001fffeffffff
    CapBnd:\t000001fffeffffff
    CapAmb:\t0000000000000000
    NoNewPrivs:\t0
    Seccomp:\t0
    Cpus_allowed:\t3
    Cpus_allowed_list:\t0-1
    voluntary_ctxt_switches:\t44
    nonvoluntary_ctxt_switches:\t0

    """

private func bit(_ signal: Int) -> UInt64 { 1 << UInt64(signal - 1) }

@Suite("ProcParsers")
struct ProcParsersTests {
    @Test func statOfARealProcess() throws {
        let fields = try #require(ProcParsers.statFields(pythonStat))
        #expect(fields.state == "R" && fields.ppid == 6755 && fields.pgrp == 6755 && fields.startTicks == 399_931)
    }

    @Test func statCPUTimeSumsOwnAndReapedChildrensTicks() throws {
        // utime 7, stime 3, cutime 120, cstime 30 (fields 14-17).
        let line = "42 (gunicorn: master) S 1 42 42 0 -1 4194560 900 0 0 0 7 3 120 30 20 0 1 0 5000 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        let fields = try #require(ProcParsers.statFields(line))
        #expect(fields.cpuTicks == 160 && fields.startTicks == 5000)
        #expect(try #require(ProcParsers.statFields(pythonStat)).cpuTicks == 0)
    }

    @Test(arguments: ["my (weird) name", "a) S 1 2 3 (b", "x)", ") R 9 9 9 9 9", "(", "sp ace", "))))"])
    func statWithAHostileCommandName(comm: String) throws {
        let fields = try #require(ProcParsers.statFields(statLine(comm: comm)))
        #expect(fields.state == "R")
        #expect(fields.ppid == 6755)
        #expect(fields.pgrp == 6755)
        #expect(fields.startTicks == 399_931)
    }

    @Test func statOfAZombieAndOfASessionLeader() throws {
        let zombie =
            "1234 (my (weird) name) Z 1 1234 1234 0 -1 4227148 187 0 0 0 0 0 0 0 20 0 1 0 8812345 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 9"
        let fields = try #require(ProcParsers.statFields(zombie))
        #expect(fields.state == "Z" && fields.ppid == 1 && fields.pgrp == 1234 && fields.startTicks == 8_812_345)
    }

    @Test(arguments: [
        "", "1234", "1234 (name", "1234 (name) S", "1234 (name) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0",
        "1234 (name) S x 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0", "1234 (name) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5 0",
    ])
    func statRejectsTruncatedOrGarbage(text: String) {
        #expect(ProcParsers.statFields(text) == nil)
    }

    @Test func statm() {
        #expect(ProcParsers.statmRSS(pythonStatm, pageSize: 4096) == 2296 * 4096)
        #expect(ProcParsers.statmRSS(pythonStatm, pageSize: 16384) == 2296 * 16384)
        #expect(ProcParsers.statmRSS("0 0 0 0 0 0 0\n", pageSize: 4096) == 0)
        #expect(ProcParsers.statmRSS("3522\n", pageSize: 4096) == nil)
        #expect(ProcParsers.statmRSS("", pageSize: 4096) == nil)
        #expect(ProcParsers.statmRSS("a b c", pageSize: 4096) == nil)
    }

    @Test func smapsRollupOfARealProcess() throws {
        let m = try #require(ProcParsers.smapsRollup(pythonSmapsRollup))
        #expect(m.rss == 9184 * 1024)
        #expect(m.pss == 7290 * 1024)
        // USS = Private_Dirty: Private_Clean is the cache of files only it maps (python3's own
        // binary here), which its exit leaves in the page cache.
        #expect(m.uss == 3588 * 1024)
    }

    /// A re-audit: a worker that mapped a 150 MiB file written a second before (dirty in the page
    /// cache until written back) read as `USS 160.3 MiB > worker_limit 100.0 MiB`.
    @Test func dirtyPagesOfAMappedFileAreNotUSS() throws {
        let rollup = """
            00400000-7ffd76d29000 ---p 00000000 00:00 0                              [rollup]
            Rss:              164196 kB
            Pss:              164196 kB
            Pss_Dirty:        164128 kB
            Pss_Anon:           9000 kB
            Pss_File:         155196 kB
            Pss_Shmem:           128 kB
            Shared_Clean:          0 kB
            Shared_Dirty:          0 kB
            Private_Clean:        68 kB
            Private_Dirty:    164128 kB

            """
        #expect(try #require(ProcParsers.smapsRollup(rollup)).uss == (9000 + 128) * 1024)
        // A kernel without Pss_Anon: Private_Dirty.
        let older = "Rss: 200 kB\nPss: 150 kB\nPrivate_Clean: 20 kB\nPrivate_Dirty: 100 kB\n"
        #expect(try #require(ProcParsers.smapsRollup(older)).uss == 100 * 1024)
    }

    @Test func smapsRollupWithoutPrivateLinesAndBroken() throws {
        let minimal = "Rss:  100 kB\nPss:  40 kB\n"
        let m = try #require(ProcParsers.smapsRollup(minimal))
        #expect(m.rss == 102_400 && m.pss == 40_960 && m.uss == 0)
        #expect(ProcParsers.smapsRollup("") == nil)
        #expect(ProcParsers.smapsRollup("Rss: 100 kB\n") == nil)
        // A kernel thread or an exited process: the file is empty or only has the header.
        #expect(ProcParsers.smapsRollup("00400000-7ffd76d29000 ---p 00000000 00:00 0   [rollup]\n") == nil)
    }

    @Test func signalMasksOfARealProcess() {
        let blocked = ProcParsers.statusMask(pythonStatus, field: "SigBlk")
        #expect(blocked == 0x14001)
        #expect(blocked == bit(1) | bit(15) | bit(17))  // SIGHUP, SIGTERM, SIGCHLD
        let ignored = ProcParsers.statusMask(pythonStatus, field: "SigIgn")
        #expect(ignored == bit(2) | bit(13) | bit(25))  // SIGINT; python3 itself ignores SIGPIPE and SIGXFSZ
        #expect(ProcParsers.statusMask(pythonStatus, field: "SigPnd") == 0)
        #expect(ProcParsers.statusMask(pythonStatus, field: "ShdPnd") == 0)
        #expect(ProcParsers.statusMask(pythonStatus, field: "CapBnd") == 0x1ff_feff_ffff)
    }

    @Test func signalMaskFieldMustMatchWholeName() {
        #expect(ProcParsers.statusMask(pythonStatus, field: "Sig") == nil)
        #expect(ProcParsers.statusMask(pythonStatus, field: "SigFoo") == nil)
        #expect(ProcParsers.statusMask("SigBlk:\tzz\n", field: "SigBlk") == nil)
        #expect(ProcParsers.statusMask("SigBlk:\tffffffffffffffff\n", field: "SigBlk") == UInt64.max)
        #expect(ProcParsers.statusMask("", field: "SigBlk") == nil)
    }

    @Test func memorySampleSums() {
        let a = MemorySample(rss: 10, pss: 5, uss: 2)
        let b = MemorySample(rss: 20, pss: 7, uss: 3)
        #expect(a + b == MemorySample(rss: 30, pss: 12, uss: 5))
        #expect(a + MemorySample(rss: 1, pss: nil, uss: nil) == MemorySample(rss: 11, pss: nil, uss: nil))
    }

    /// A fuzz audit: numbers near 2^64 in /proc figures trapped on overflow (SIGILL: baton
    /// aborted); they stop at UInt64.max now.
    @Test func figuresThatWouldOverflowStopAtTheMaximum() throws {
        #expect(ProcParsers.smapsRollup("Rss: 18014398509481984 kB\nPss: 1 kB\nPrivate_Dirty: 18014398509481984 kB\n")?.rss == .max)
        #expect(ProcParsers.statmRSS(" 1 4503599627370496 0", pageSize: 4096) == .max)
        let stat = " 1 (x) S 1 1 1 0 0 0 0 0 0 0 18446744073709551615 1 0 0 0 0 0 0 5 0"
        #expect(ProcParsers.statFields(stat)?.cpuTicks == .max)
        #expect(CommitCharge.privateWritable(maps: "0-ffffffffffffffff rw-p\n0-ffffffffffffffff rw-p\n") == .max)
        let meminfo = try HostMemoryInfo.parse(
            "MemTotal: 18014398509481984 kB\nMemAvailable: 1 kB\nMemFree: 1 kB\nCommitLimit: 1 kB\nCommitted_AS: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
        #expect(meminfo.total == .max)
        let big = MemorySample(rss: .max, pss: .max, uss: 1, shared: nil)
        #expect((big + big).rss == .max && (big + big).pss == .max)
    }
}
