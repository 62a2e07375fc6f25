import BatonCore
import Testing

/// Fixtures for the memory tests. The `real…` ones were recorded verbatim on the build machine
/// (Linux 6.18, a hybrid cgroup host: memory controller on v1, cgroup2 mounted without it);
/// the others are hand-made in the kernel's formats for the cases that machine cannot show.
enum MemoryFixtures {
    /// /proc/meminfo of the build machine (24 GiB, overcommit mode 0).
    static let realMeminfo = """
        MemTotal:       24683656 kB
        MemFree:        22815620 kB
        MemAvailable:   24236444 kB
        Buffers:           13132 kB
        Cached:          1538012 kB
        SwapCached:            0 kB
        Active:           965076 kB
        Inactive:         591964 kB
        Active(anon):       1556 kB
        Inactive(anon):    13240 kB
        Active(file):     963520 kB
        Inactive(file):   578724 kB
        Unevictable:       11452 kB
        Mlocked:           10388 kB
        SwapTotal:             0 kB
        SwapFree:              0 kB
        Zswap:                 0 kB
        Zswapped:              0 kB
        Dirty:            102884 kB
        Writeback:             0 kB
        AnonPages:         17472 kB
        Mapped:            33828 kB
        Shmem:              8896 kB
        KReclaimable:     173932 kB
        Slab:             204168 kB
        SReclaimable:     173932 kB
        SUnreclaim:        30236 kB
        KernelStack:        1784 kB
        PageTables:         2540 kB
        SecPageTables:         0 kB
        NFS_Unstable:          0 kB
        Bounce:                0 kB
        WritebackTmp:          0 kB
        CommitLimit:    12341828 kB
        Committed_AS:      90840 kB
        VmallocTotal:   34359738367 kB
        VmallocUsed:       14556 kB
        VmallocChunk:          0 kB
        Percpu:              832 kB
        AnonHugePages:         0 kB
        ShmemHugePages:        0 kB
        ShmemPmdMapped:        0 kB
        FileHugePages:     22528 kB
        FilePmdMapped:         0 kB
        Balloon:               0 kB
        HugePages_Total:       0
        HugePages_Free:        0
        HugePages_Rsvd:        0
        HugePages_Surp:        0
        Hugepagesize:       2048 kB
        Hugetlb:               0 kB
        DirectMap4k:       26624 kB
        DirectMap2M:     2070528 kB
        DirectMap1G:    25165824 kB

        """

    /// /proc/self/cgroup there: a hybrid host, memory on v1, v2 mounted with no memory controller.
    static let realSelfCgroup = """
        9:name=systemd:/
        8:pids:/
        7:blkio:/
        6:freezer:/
        5:devices:/
        4:memory:/process_api/975b40bdef79487d563803acf782847c
        3:cpuset:/
        2:cpuacct:/
        1:cpu:/
        0::/

        """

    /// /proc/self/mountinfo there: v1 hierarchies under /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified.
    static let realMountinfo = """
        22 27 0:21 / /proc rw,relatime - proc proc rw
        23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
        24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334464k,nr_inodes=3083616,mode=755
        25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
        26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
        28 27 0:25 / /mnt/sandboxing/model_tools_env/v1/python ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k,mode=755
        29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
        30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
        37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw

        """

    /// memory.stat of the job's v1 cgroup /process_api/975b40bdef79487d563803acf782847c.
    static let realV1LeafStat = """
        cache 105611264
        rss 2220032
        rss_huge 0
        shmem 0
        mapped_file 16384
        dirty 39084032
        writeback 0
        workingset_refault_anon 0
        workingset_refault_file 7509
        swap 0
        swapcached 0
        pgpgin 1349284
        pgpgout 1328500
        pgfault 1725680
        pgmajfault 201
        inactive_anon 2199552
        active_anon 12288
        inactive_file 54878208
        active_file 50733056
        unevictable 0
        hierarchical_memory_limit 9223372036854771712
        hierarchical_memsw_limit 9223372036854771712
        total_cache 105611264
        total_rss 2220032
        total_rss_huge 0
        total_shmem 0
        total_mapped_file 16384
        total_dirty 39084032
        total_writeback 0
        total_workingset_refault_anon 0
        total_workingset_refault_file 7509
        total_swap 0
        total_swapcached 0
        total_pgpgin 1349284
        total_pgpgout 1328500
        total_pgfault 1725680
        total_pgmajfault 201
        total_inactive_anon 2199552
        total_active_anon 12288
        total_inactive_file 54878208
        total_active_file 50733056
        total_unevictable 0

        """

    /// memory.stat of its parent /process_api.
    static let realV1ParentStat = """
        cache 0
        rss 0
        rss_huge 0
        shmem 0
        mapped_file 0
        dirty 0
        writeback 0
        workingset_refault_anon 0
        workingset_refault_file 0
        swap 0
        swapcached 0
        pgpgin 0
        pgpgout 0
        pgfault 0
        pgmajfault 0
        inactive_anon 0
        active_anon 0
        inactive_file 0
        active_file 0
        unevictable 0
        hierarchical_memory_limit 9223372036854771712
        hierarchical_memsw_limit 9223372036854771712
        total_cache 1571270656
        total_rss 13914112
        total_rss_huge 0
        total_shmem 0
        total_mapped_file 27074560
        total_dirty 105238528
        total_writeback 0
        total_workingset_refault_anon 0
        total_workingset_refault_file 937151
        total_swap 0
        total_swapcached 0
        total_pgpgin 25810152
        total_pgpgout 25469900
        total_pgfault 32848731
        total_pgmajfault 11024
        total_inactive_anon 13692928
        total_active_anon 65536
        total_inactive_file 592121856
        total_active_file 979148800
        total_unevictable 0

        """

    /// memory.usage_in_bytes of that leaf cgroup.
    static let realV1LeafUsage = "118464512\n"

    /// memory.limit_in_bytes of every level there: v1's "unlimited" (PAGE_COUNTER_MAX pages).
    static let realV1Unlimited = "9223372036854771712\n"

    /// Hand-made: a 16 GiB host under vm.overcommit_memory=2 (CommitLimit = 2 GiB swap + 50% of
    /// RAM): 12 GiB MemAvailable, but only 100 MiB of commit left.
    static let strictMeminfo = """
        MemTotal:       16777216 kB
        MemFree:        11534336 kB
        MemAvailable:   12582912 kB
        Buffers:           65536 kB
        Cached:          1048576 kB
        SwapTotal:       2097152 kB
        SwapFree:        2097152 kB
        CommitLimit:    10485760 kB
        Committed_AS:   10383360 kB
        VmallocTotal:   34359738367 kB
        HugePages_Total:       0
        Hugepagesize:       2048 kB

        """

    /// Hand-made: /proc/self/cgroup of a systemd service on a pure v2 host (Debian 12).
    static let v2SelfCgroup = "0::/system.slice/baton@shop.service\n"

    /// Hand-made: /proc/self/mountinfo of a pure v2 host (Debian 12's systemd layout).
    static let v2Mountinfo = """
        22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
        23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
        28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
        30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        31 22 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw

        """

    /// Hand-made: memory.stat of a v2 service cgroup (Linux 6.1 field set, abridged).
    static let v2ServiceStat = """
        anon 145485824
        file 318767104
        kernel 9437184
        kernel_stack 557056
        pagetables 1855488
        sock 0
        shmem 0
        file_mapped 52428800
        file_dirty 4096
        file_writeback 0
        anon_thp 0
        inactive_anon 145203200
        active_anon 282624
        inactive_file 209715200
        active_file 109051904
        unevictable 0
        slab_reclaimable 5242880
        slab_unreclaimable 1572864
        slab 6815744
        pgfault 412345
        pgmajfault 12

        """

    /// memory.current matching ``v2ServiceStat`` (anon + file + kernel).
    static let v2ServiceCurrent = "473690112\n"

    /// Hand-made: memory.stat of a v1 child cgroup with no limit of its own under a parent
    /// limited to 512 MiB: hierarchical_memory_limit carries the parent's.
    static let v1ChildStat = """
        cache 41943040
        rss 209715200
        mapped_file 8388608
        inactive_anon 209715200
        active_anon 0
        inactive_file 25165824
        active_file 16777216
        unevictable 0
        hierarchical_memory_limit 536870912
        hierarchical_memsw_limit 9223372036854771712
        total_cache 41943040
        total_rss 209715200
        total_mapped_file 8388608
        total_inactive_anon 209715200
        total_active_anon 0
        total_inactive_file 25165824
        total_active_file 16777216
        total_unevictable 0

        """
}

@Suite("Host memory parsers")
struct MemoryParsersTests {
    private let kib: UInt64 = 1024

    @Test func meminfoOfTheBuildMachine() throws {
        let host = try HostMemoryInfo.parse(MemoryFixtures.realMeminfo)
        #expect(host.total == 24_683_656 * kib)
        #expect(host.available == 24_236_444 * kib)
        #expect(host.commitLimit == 12_341_828 * kib)
        #expect(host.committed == 90_840 * kib)
        #expect(host.commitHeadroom == Int64((12_341_828 - 90_840) * kib))
    }

    @Test func meminfoOfAStrictHost() throws {
        let host = try HostMemoryInfo.parse(MemoryFixtures.strictMeminfo)
        #expect(host.available == 12 << 30)
        #expect(host.commitHeadroom == 100 << 20)
    }

    @Test func meminfoMissingAFieldSaysWhich() {
        let text = MemoryFixtures.realMeminfo.split(separator: "\n").filter { !$0.hasPrefix("Committed_AS") }
            .joined(separator: "\n")
        #expect(throws: MemoryParseError("missing field \"Committed_AS\"")) {
            try HostMemoryInfo.parse(text)
        }
        #expect(throws: MemoryParseError.self) { try HostMemoryInfo.parse("") }
    }

    @Test func overcommitModes() throws {
        #expect(try OvercommitMode.parse("0\n") == .heuristic)
        #expect(try OvercommitMode.parse("1") == .always)
        #expect(try OvercommitMode.parse("2\n") == .strict)
        for bad in ["", "3\n", "x", "2 2"] {
            #expect(throws: MemoryParseError.self) { try OvercommitMode.parse(bad) }
        }
    }
}
