import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// Recorded /proc and cgroup files under a temporary root.
private final class RecordedRoot {
    let path = TestPaths.temporaryDirectory("oomc")

    func write(_ absolute: String, _ text: String) {
        let full = path + absolute
        var current = ""
        for part in full.split(separator: "/").dropLast() {
            current += "/" + part
            mkdir(current, 0o755)
        }
        TestPaths.write(full, text)
    }

    deinit { TestPaths.remove(path) }
}

@Suite("OOM counter reader")
struct OOMCounterReaderTests {
    @Test func v1ReadsOomControlOfTheMemoryCgroup() throws {
        let root = RecordedRoot()
        root.write("/proc/self/cgroup", "9:name=systemd:/\n4:memory:/app/shop\n0::/\n")
        root.write(
            "/proc/self/mountinfo",
            "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        )
        root.write("/sys/fs/cgroup/memory/app/shop/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
        let reader = try OOMCounterReader(root: root.path)
        #expect(reader.path == root.path + "/sys/fs/cgroup/memory/app/shop/memory.oom_control")
        #expect(try reader.read() == 3)
    }

    @Test func v2ReadsMemoryEventsOfTheNearestCgroupWithTheController() throws {
        let root = RecordedRoot()
        root.write("/proc/self/cgroup", "0::/system.slice/shop.service/workers\n")
        root.write("/proc/self/mountinfo", "30 22 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n")
        // The leaf has no memory controller: its charges (and kills) count in its parent.
        root.write("/sys/fs/cgroup/system.slice/shop.service/workers/cgroup.procs", "")
        root.write(
            "/sys/fs/cgroup/system.slice/shop.service/memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n")
        let reader = try OOMCounterReader(root: root.path)
        #expect(reader.path.hasSuffix("/system.slice/shop.service/memory.events"))
        #expect(try reader.read() == 2)
    }

    @Test func aKernelWithoutTheCounterIsAClearError() throws {
        let root = RecordedRoot()
        root.write("/proc/self/cgroup", "4:memory:/old\n")
        root.write("/proc/self/mountinfo", "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")
        root.write("/sys/fs/cgroup/memory/old/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
        let reader = try OOMCounterReader(root: root.path)
        #expect(throws: MemoryReadError.malformed(path: reader.path, problem: "no oom_kill line (kernel older than 4.13?)")) {
            try reader.read()
        }
    }

    @Test func thisProcessHasOneWhereItsMemoryCgroupIsMounted() throws {
        guard let reader = try? OOMCounterReader() else { return }  // no memory cgroup visible here
        _ = try reader.read()
    }
}
