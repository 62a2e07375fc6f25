import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// A cgroup v1 memory group of the test's own, under the cgroup the test runs in: made with a
/// small limit, baton is moved into it (its workers follow), removed at the end.
struct TestMemoryCgroup {
    /// Its directory under /sys/fs/cgroup/memory.
    let directory: String
    /// The parent's directory (where leftover processes go back before removal).
    let parent: String

    /// The v1 memory cgroup directory of this process, if there is a writable one.
    static var ownDirectory: String? {
        guard let text = ProcFS.read("/proc/self/cgroup"),
            let line = text.split(separator: "\n").first(where: { $0.split(separator: ":", maxSplits: 2).dropFirst().first == "memory" })
        else { return nil }
        let path = String(line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)[2])
        let directory = "/sys/fs/cgroup/memory" + (path == "/" ? "" : path)
        return access(directory + "/cgroup.procs", W_OK) == 0 ? directory : nil
    }

    /// Whether a v1 memory cgroup can be made here (root, memory controller on v1, writable).
    static var available: Bool { ownDirectory != nil }

    /// Makes `<own cgroup>/<tag>-<pid>` with `limit` bytes.
    init(tag: String, limit: UInt64) throws {
        parent = try #require(Self.ownDirectory)
        directory = parent + "/\(tag)-\(getpid())"
        if access(directory, F_OK) == 0 { Self.empty(directory, into: parent) }
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
            throw HarnessError("mkdir \(directory): \(String(cString: strerror(errno)))")
        }
        TestPaths.write(directory + "/memory.limit_in_bytes", "\(limit)\n")
    }

    /// The kernel's OOM kill counter of the group.
    var oomKills: UInt64? {
        ProcFS.read(directory + "/memory.oom_control").flatMap { CgroupFiles.stat($0)["oom_kill"] }
    }

    /// Moves what is left back to the parent and removes the group.
    func remove() {
        Self.empty(directory, into: parent)
        _ = rmdir(directory)
    }

    private static func empty(_ directory: String, into parent: String) {
        let pids = ProcFS.read(directory + "/cgroup.procs")?.split(separator: "\n") ?? []
        for pid in pids { TestPaths.write(parent + "/cgroup.procs", "\(pid)\n") }
        _ = rmdir(directory)
    }
}

extension MemoryIntegration {
    /// Kernel OOM kills in a real memory cgroup: a worker's child allocates past the limit.
    @Suite("oom kills")
    struct OOMTests {
        /// Workers ready after a fixed delay and no periodic memory check: the kernel's OOM
        /// killer, not baton's policy, decides (FootprintTests use them too).
        static let sections = """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            mode = "delay"
            delay = "300ms"
            [stop]
            timeout = "5s"
            [memory]
            check_interval = "1h"
            """

        /// Two workers of `script` under a baton that runs inside `cgroup` (its wrapper joins it).
        static func start(_ script: String, in cgroup: TestMemoryCgroup, tag: String, extra: String = "") throws -> BatonHarness {
            try BatonHarness(
                workers: 2, command: [script], sections: sections + extra, tag: tag,
                wrapper: ["/bin/sh", "-c", "echo $$ > \(cgroup.directory)/cgroup.procs && exec \"$@\"", "sh"])
        }

        @Test(
            "an OOM-killed grandchild is logged with its pid, counted on its slot in status and metrics, and the slot is replaced",
            .enabled(if: TestMemoryCgroup.available, "needs a writable cgroup v1 memory hierarchy (root)"))
        func grandchildKilled() throws {
            let cgroup = try TestMemoryCgroup(tag: "baton-oom-test", limit: 128 << 20)
            defer { cgroup.remove() }
            let marks = TestPaths.temporaryDirectory("oom-mark")
            // The first worker to start forks a child that writes its pid, waits (so it is in
            // baton's tree snapshot), then allocates 1 MiB every 10 ms; the worker itself stays.
            let script = marks + "/worker.sh"
            TestPaths.write(
                script,
                """
                #!/bin/sh
                if mkdir "\(marks)/taken" 2>/dev/null; then
                  perl -e 'open(my $f, ">", "\(marks)/taken/pid") or die; print $f $$; close $f; sleep 2; my @a; for (1..2000) { push @a, "x" x 1048576; select(undef, undef, undef, 0.01); }' &
                fi
                exec sleep 100000
                """, mode: 0o755)
            let baton = try Self.start(script, in: cgroup, tag: "oom", extra: "\n[metrics]\naddress = \"127.0.0.1:0\"")
            defer {
                baton.stop()
                TestPaths.remove(marks)
            }
            let before = try baton.status()
            let warn = try #require(
                baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("OOM kill: the kernel killed pid") },
                "\(baton.process.stderrLines.suffix(15))")
            let victim = try #require(ProcFS.read(marks + "/taken/pid").flatMap { Int32($0) })
            #expect(warn.contains("victim_pid=\(victim)"), "\(warn)")
            #expect(warn.contains("comm=perl"), "\(warn)")
            #expect((cgroup.oomKills ?? 0) >= 1)
            // The worker whose tree held it is replaced (its top process survived the kill).
            let slotText = try #require(warn.split(separator: " ").first { $0.hasPrefix("slot=") }?.dropFirst(5))
            let slot = try #require(Int(slotText))
            let oldPid = try #require(before.workers.first { $0.slot == slot }?.pid)
            let replaced = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("policy (oom)") || $0.contains("policy finished") }
            #expect(replaced != nil, "\(baton.process.stderrLines.suffix(15))")
            let after = try baton.status()
            let oom = try #require(after.oom)
            #expect(oom.kills >= 1)
            #expect(oom.bySlot[String(slot)] == 1)
            #expect(oom.recent.contains { $0.pid == victim && $0.slot == slot && !$0.topProcess })
            let row = try #require(after.workers.first { $0.slot == slot && $0.state == "ready" })
            #expect(row.pid != oldPid)
            #expect(row.lastRestartReason == "oom")
            #expect(after.table(now: wallClockNow()).contains("oom kills: 1 (slot \(slot): 1); last: pid \(victim) (perl) in slot \(slot)"))
            print("oom: \(warn)\n\(after.table(now: wallClockNow()))")
            let port = try #require(baton.metricsPort())
            let metrics = try #require(HTTP.get(port: port, path: "/metrics")).body
            #expect(metrics.contains("baton_oom_kills_total{slot=\"\(slot)\"} 1"), "\(metrics)")
            #expect(metrics.contains("baton_restarts_total{reason=\"oom\"} 1"))
            // Later plans keep a margin: preflight says its tooling figure includes one.
            let preflight = try baton.cli(["preflight"])
            #expect(preflight.stdout.contains("the tooling figure includes a margin of"), "\(preflight.stdout)\(preflight.stderr)")
            #expect((after.oom?.marginBytes ?? 0) > 0)
        }

        @Test(
            "a worker OOM-killed itself is a crash classified as oom: logged with its pid, counted, respawned",
            .enabled(if: TestMemoryCgroup.available, "needs a writable cgroup v1 memory hierarchy (root)"))
        func topProcessKilled() throws {
            let cgroup = try TestMemoryCgroup(tag: "baton-oom-top", limit: 128 << 20)
            defer { cgroup.remove() }
            let marks = TestPaths.temporaryDirectory("oom-top")
            // The first worker to start becomes a perl that allocates past the limit itself.
            let script = marks + "/worker.sh"
            TestPaths.write(
                script,
                """
                #!/bin/sh
                if mkdir "\(marks)/taken" 2>/dev/null; then
                  exec perl -e 'sleep 2; my @a; for (1..2000) { push @a, "x" x 1048576; select(undef, undef, undef, 0.01); }'
                fi
                exec sleep 100000
                """, mode: 0o755)
            let baton = try Self.start(script, in: cgroup, tag: "oomtop")
            defer {
                baton.stop()
                TestPaths.remove(marks)
            }
            let warn = try #require(
                baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("OOM kill: the kernel killed worker pid") },
                "\(baton.process.stderrLines.suffix(15))")
            let slotText = try #require(warn.split(separator: " ").first { $0.hasPrefix("slot=") }?.dropFirst(5))
            let slot = try #require(Int(slotText))
            let victimText = try #require(warn.split(separator: " ").first { $0.hasPrefix("victim_pid=") }?.dropFirst(11))
            let victim = try #require(Int32(victimText))
            let respawned = baton.process.waitForLine(timeout: .seconds(60)) {
                $0.contains("worker ready") && $0.contains("slot=\(slot)") && !$0.contains("pid=\(victim)")
            }
            #expect(respawned != nil, "\(baton.process.stderrLines.suffix(15))")
            let status = try baton.status()
            let row = try #require(status.workers.first { $0.slot == slot })
            #expect(row.pid != victim)
            #expect(row.lastRestartReason == "oom")
            let oom = try #require(status.oom)
            #expect(oom.bySlot[String(slot)] == 1)
            #expect(oom.recent.contains { $0.pid == victim && $0.slot == slot && $0.topProcess })
            print("oom (top process): \(warn)")
        }
    }
}
