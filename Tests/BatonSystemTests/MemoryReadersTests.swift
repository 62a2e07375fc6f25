import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

private let mib: UInt64 = 1 << 20

/// A fake root under /tmp holding recorded /proc and cgroup files.
private final class FakeRoot {
    let path = TestPaths.temporaryDirectory("mem")

    /// Writes `text` at `absolute` under the root, creating the directories.
    func write(_ absolute: String, _ text: String) {
        let full = path + absolute
        makeDirectories(String(full[..<(full.lastIndex(of: "/") ?? full.endIndex)]))
        TestPaths.write(full, text)
    }

    /// Creates `dir` (under the root, by absolute path) without files: a cgroup whose
    /// controller files are absent.
    func directory(_ absolute: String) { makeDirectories(path + absolute) }

    private func makeDirectories(_ full: String) {
        var current = ""
        for part in full.split(separator: "/") {
            current += "/" + part
            mkdir(current, 0o755)
        }
    }

    deinit { TestPaths.remove(path) }
}

/// Recorded on the build machine (hybrid: memory on v1): abridged mountinfo and cgroup lines.
private let hybridMountinfo = """
    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw

    """
private let hybridCgroup = """
    9:name=systemd:/
    4:memory:/process_api/975b40bdef79487d563803acf782847c
    1:cpu:/
    0::/

    """
private let v1Unlimited = "9223372036854771712\n"

/// A pure v2 host (Debian 12 layout): cgroup2 on /sys/fs/cgroup.
private let v2Mountinfo = """
    28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
    30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot

    """
private let v2Stat =
    "anon 100000000\nfile 300000000\nfile_mapped 50000000\ninactive_file 200000000\nactive_file 100000000\n"

/// A mode-2 meminfo: 12 GiB MemAvailable, 100 MiB of commit left.
private let strictMeminfo =
    "MemTotal:       16777216 kB\nMemAvailable:   12582912 kB\nCommitLimit:    10485760 kB\nCommitted_AS:   10383360 kB\n"

@Suite("Memory readers on this machine", .serialized)
struct MemoryReadersHostTests {
    @Test func hostFiguresArePlausible() throws {
        let host = try HostMemoryReader().info()
        #expect(host.total > 64 * mib)
        #expect(host.available > 0 && host.available <= host.total)
        #expect(host.commitLimit > 0 && host.committed > 0)
        let mode = try HostMemoryReader().overcommitMode()
        #expect([.heuristic, .always, .strict].contains(mode))
    }

    @Test func theTestProcessCgroupIsFound() throws {
        let reader = CgroupMemoryReader()
        let member = try reader.membership()
        let cgroup = try reader.memory()
        #expect(cgroup.version == member.memoryVersion)
        let own = try #require(cgroup.version == .v1 ? member.v1MemoryPath : member.unifiedPath)
        // The charged cgroup is the process's own or, without the controller there, an ancestor.
        #expect(cgroup.path == own || own.hasPrefix(cgroup.path == "/" ? "/" : cgroup.path + "/"))
        #expect(cgroup.usage > 0)
        #expect(cgroup.reclaimable <= cgroup.usage)
        if let limit = cgroup.limit { #expect(limit > 0 && limit < CgroupFiles.unlimitedFrom) }
        // A child process is in the same cgroup.
        #expect(try reader.memory(of: getpid()).path == cgroup.path)
        let readings = try HostMemoryReader().readings()
        #expect(readings.cgroup?.path == cgroup.path)
    }

    /// An apps audit: a worker reading its own file through mmap grew its USS by the file's
    /// pages (Private_Clean: mapped by it alone), which a restart leaves in the page cache; the
    /// memory rules restarted it 18 times in 30 s for memory no restart gave back.
    @Test func theCacheOfAFileOnlyItMapsIsNotUSS() throws {
        let directory = TestPaths.temporaryDirectory("mmap")
        defer { TestPaths.remove(directory) }
        let file = directory + "/data.bin"
        let script = """
            import mmap, os, sys, time
            with open(sys.argv[1], 'wb') as f:
                f.write(b'x' * (32 << 20)); f.flush(); os.fsync(f.fileno())
            f = open(sys.argv[1], 'rb')
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            total = sum(m[i] for i in range(0, len(m), 4096))
            sys.stderr.write('ready\\n')
            sys.stderr.flush()
            time.sleep(60)

            """
        let p = try TestProcess([python3, "-c", script, file], environment: childEnvironment)
        defer { p.stop(timeout: .seconds(5)) }
        try #require(p.waitForLine(containing: "ready", timeout: .seconds(30)) != nil, "python3: \(p.stderrLines)")
        let memory = try #require(ProcFS.treeMemory(of: p.pid, detailed: true))
        // 32 MiB resident through the mapping, and none of it private dirty.
        #expect(memory.rss > 32 * mib)
        #expect(try #require(memory.uss) < 24 * mib, "USS \(memory.uss.map { $0 >> 20 } ?? 0) MiB")
    }

    @Test func commitChargeOfAThreadedPythonExceedsItsPSS() throws {
        let script = """
            import sys, threading
            stop = threading.Event()
            for _ in range(8):
                threading.Thread(target=stop.wait, daemon=True).start()
            sys.stderr.write('ready\\n')
            sys.stderr.flush()
            stop.wait(60)

            """
        let p = try TestProcess([python3, "-c", script], environment: childEnvironment)
        defer { p.stop(timeout: .seconds(5)) }
        try #require(p.waitForLine(containing: "ready", timeout: .seconds(30)) != nil, "python3: \(p.stderrLines)")
        let charge = try #require(CommitChargeReader().tree(of: p.pid))
        let memory = try #require(ProcFS.treeMemory(of: p.pid, detailed: true))
        let pss = try #require(memory.pss)
        // Eight 8 MiB thread stacks are charged in full, touched or not.
        #expect(charge > pss, "commit \(charge), PSS \(pss)")
        #expect(charge > 64 * mib)
        #expect(try CommitChargeReader().process(p.pid) == charge)  // one process: tree == process
        #expect(CommitChargeReader().tree(of: 999_999_999) == nil)
    }
}

@Suite("Memory readers on a recorded tree", .serialized)
struct MemoryReadersFakeTreeTests {
    @Test func hybridHostRecordedHere() throws {
        let root = FakeRoot()
        let leaf = "/process_api/975b40bdef79487d563803acf782847c"
        root.write("/proc/self/cgroup", hybridCgroup)
        root.write("/proc/self/mountinfo", hybridMountinfo)
        for dir in [leaf, "/process_api", ""] {
            root.write("/sys/fs/cgroup/memory\(dir)/memory.limit_in_bytes", v1Unlimited)
        }
        root.write("/sys/fs/cgroup/memory\(leaf)/memory.usage_in_bytes", "118464512\n")
        root.write(
            "/sys/fs/cgroup/memory\(leaf)/memory.stat",
            "cache 105611264\nrss 2220032\nmapped_file 16384\nhierarchical_memory_limit 9223372036854771712\ntotal_mapped_file 16384\ntotal_inactive_file 54878208\ntotal_active_file 50733056\n"
        )
        // The unified mount has no memory controller: its files are absent, v1 is used.
        root.write("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")
        let cgroup = try CgroupMemoryReader(root: root.path).memory()
        #expect(
            cgroup
                == CgroupMemory(
                    version: .v1, path: leaf, limit: nil, limitPath: nil, usage: 118_464_512, high: nil,
                    reclaimable: 54_878_208 + 50_733_056 - 16_384))
    }

    @Test func v1ChildLimitedByItsParent() throws {
        let root = FakeRoot()
        root.write("/proc/self/cgroup", "4:memory:/shop/workers\n0::/\n")
        root.write("/proc/self/mountinfo", hybridMountinfo)
        root.write("/sys/fs/cgroup/memory/shop/memory.limit_in_bytes", "536870912\n")
        root.write("/sys/fs/cgroup/memory/shop/workers/memory.limit_in_bytes", v1Unlimited)
        root.write("/sys/fs/cgroup/memory/shop/workers/memory.usage_in_bytes", "251658240\n")
        root.write(
            "/sys/fs/cgroup/memory/shop/workers/memory.stat",
            "hierarchical_memory_limit 536870912\ntotal_inactive_file 25165824\ntotal_active_file 16777216\ntotal_mapped_file 8388608\n"
        )
        let cgroup = try CgroupMemoryReader(root: root.path).memory()
        #expect(cgroup.version == .v1 && cgroup.path == "/shop/workers")
        #expect(cgroup.limit == 512 * mib && cgroup.limitPath == "/shop")
        #expect(cgroup.workingSet == 251_658_240 - 33_554_432)
    }

    @Test func v2NestedLimitsAndAnAncestorCharged() throws {
        let root = FakeRoot()
        let service = "/system.slice/baton@shop.service"
        // baton sits in a sub-cgroup without the memory controller: the service is charged.
        root.write("/proc/self/cgroup", "0::\(service)/supervisor\n")
        root.write("/proc/self/mountinfo", v2Mountinfo)
        root.directory("/sys/fs/cgroup\(service)/supervisor")
        root.write("/sys/fs/cgroup\(service)/memory.current", "400000000\n")
        root.write("/sys/fs/cgroup\(service)/memory.stat", v2Stat)
        root.write("/sys/fs/cgroup\(service)/memory.max", "2147483648\n")
        root.write("/sys/fs/cgroup\(service)/memory.high", "max\n")
        root.write("/sys/fs/cgroup/system.slice/memory.max", "1073741824\n")
        root.write("/sys/fs/cgroup/system.slice/memory.high", "966367641\n")
        root.write("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n")  // the root has no memory.max
        let cgroup = try CgroupMemoryReader(root: root.path).memory()
        #expect(
            cgroup
                == CgroupMemory(
                    version: .v2, path: service, limit: 1 << 30, limitPath: "/system.slice", usage: 400_000_000,
                    high: 966_367_641, reclaimable: 250_000_000))
        // All "max": unlimited.
        root.write("/sys/fs/cgroup\(service)/memory.max", "max\n")
        root.write("/sys/fs/cgroup/system.slice/memory.max", "max\n")
        root.write("/sys/fs/cgroup/system.slice/memory.high", "max\n")
        let unlimited = try CgroupMemoryReader(root: root.path).memory()
        #expect(unlimited.limit == nil && unlimited.high == nil && unlimited.limitPath == nil)
    }

    @Test func strictHostReadingsBindOnCommit() throws {
        let root = FakeRoot()
        root.write("/proc/meminfo", strictMeminfo)
        root.write("/proc/sys/vm/overcommit_memory", "2\n")
        root.write("/proc/self/cgroup", "0::/\n")
        root.write("/proc/self/mountinfo", v2Mountinfo)  // the root cgroup: no memory.current
        let readings = try HostMemoryReader(root: root.path).readings()
        #expect(readings.cgroup == nil && readings.overcommit == .strict)
        let headroom = Headroom(readings: readings, memory: MemoryConfig(), workersPSS: 0)
        #expect(headroom.tightest == HeadroomLimit(kind: .commitLimit, available: Int64(100 * mib)))
        #expect(headroom.limit(.hostAvailable)?.available == Int64(12 * 1024 * mib - 512 * mib))
    }

    @Test func errorsNameTheFile() throws {
        let root = FakeRoot()
        let reader = HostMemoryReader(root: root.path)
        #expect(throws: MemoryReadError.unreadable(path: root.path + "/proc/meminfo", errno: ENOENT)) {
            try reader.info()
        }
        let missing = MemoryReadError.unreadable(path: "/x/proc/meminfo", errno: ENOENT)
        #expect(missing.description == "/x/proc/meminfo: No such file or directory (errno 2)")
        root.write("/proc/meminfo", "MemTotal: 1 kB\n")
        #expect(
            throws: MemoryReadError.malformed(
                path: root.path + "/proc/meminfo", problem: "missing field \"MemAvailable\"")
        ) {
            try reader.info()
        }
        root.write("/proc/sys/vm/overcommit_memory", "7\n")
        #expect(throws: MemoryReadError.self) { try reader.overcommitMode() }

        let cgroups = CgroupMemoryReader(root: root.path)
        root.write("/proc/self/cgroup", "0::/a\n")
        root.write("/proc/self/mountinfo", "28 1 254:1 / / rw - ext4 /dev/vda1 rw\n")
        #expect(throws: MemoryReadError.noMemoryCgroup(pid: "self", reason: "no cgroup2 mount shows /a")) {
            try cgroups.memory()
        }
        root.write("/proc/self/mountinfo", v2Mountinfo)
        root.write("/sys/fs/cgroup/a/memory.current", "lots\n")
        root.write("/sys/fs/cgroup/a/memory.stat", v2Stat)
        #expect(
            throws: MemoryReadError.malformed(
                path: root.path + "/sys/fs/cgroup/a", problem: "expected a byte count, got \"lots\"")
        ) { try cgroups.memory() }
        #expect(throws: MemoryReadError.unreadable(path: root.path + "/proc/42/cgroup", errno: ENOENT)) {
            try cgroups.memory(of: 42)
        }
    }
}

/// The v1 memory directory of this process when it can make child cgroups there (root on a
/// v1 or hybrid host, like the build machine), else nil.
private func writableV1MemoryCgroup() -> String? {
    guard let member = try? CgroupMemoryReader().membership(), let path = member.v1MemoryPath,
        let mountinfo = ProcFS.read("/proc/self/mountinfo"),
        let mount = CgroupMount.mount(for: path, version: .v1, in: CgroupMount.parseMountInfo(mountinfo)),
        let dir = mount.directory(of: path), access(dir, W_OK) == 0
    else { return nil }
    return dir
}

@Suite("Memory readers against the kernel's v1 cgroups", .serialized)
struct MemoryReadersKernelTests {
    /// A real parent cgroup limited to 100 MiB with a child without a limit: the kernel's own
    /// hierarchical_memory_limit for a process in the child must be the parent's.
    @Test(.enabled(if: writableV1MemoryCgroup() != nil, "needs a writable cgroup v1 memory hierarchy"))
    func childOfALimitedParent() throws {
        let base = try #require(writableV1MemoryCgroup())
        let own = try #require(try CgroupMemoryReader().membership().v1MemoryPath)
        let name = "baton-test-\(getpid())"
        let parent = base + "/" + name
        let child = parent + "/child"
        try #require(mkdir(parent, 0o755) == 0 && mkdir(child, 0o755) == 0, "mkdir: errno \(errno)")
        let sleeper = try TestProcess(["/bin/sleep", "30"], environment: childEnvironment)
        defer {
            sleeper.stop(timeout: .seconds(5))
            rmdir(child)
            rmdir(parent)
        }
        TestPaths.write(parent + "/memory.limit_in_bytes", "104857600\n")
        // v1 does not move charges with the process: the child's usage starts near zero.
        TestPaths.write(child + "/cgroup.procs", "\(sleeper.pid)\n")
        let cgroup = try CgroupMemoryReader().memory(of: sleeper.pid)
        let prefix = own == "/" ? "" : own
        #expect(cgroup.version == .v1)
        #expect(cgroup.path == "\(prefix)/\(name)/child")
        #expect(cgroup.limit == 100 * mib)
        #expect(cgroup.limitPath == "\(prefix)/\(name)")
    }
}
