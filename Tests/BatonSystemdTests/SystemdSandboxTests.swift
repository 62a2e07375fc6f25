import BatonCore
import BatonSystem
import BatonTestSupport
import BatonTestTraits
import FoundationEssentials
import Glibc
import Testing

/// `scripts/systemd-sandbox`, the harness every test on a real systemd runs in: its manager
/// runs, its cgroup is below the test's own, and nothing of it is left afterwards, also
/// when it is stopped by a signal mid-run.
@Suite(
    "scripts/systemd-sandbox", .serialized, .ownThread,
    .enabled(
        if: SystemdSandbox.isAvailable,
        "needs root, systemd and unshare (scripts/systemd-sandbox, or $BATON_SYSTEMD_SANDBOX)"))
struct SystemdSandboxTests {
    /// The command inside prints the manager's state and its own cgroup, then waits (at most
    /// 30 s) for `release` to appear before it exits with 7.
    static func start(release: String) throws -> TestProcess {
        let inside = """
            echo "state=$(systemctl --user is-system-running)"
            echo "cgroup=$(grep '^0::' /proc/self/cgroup)"
            echo "units=$SANDBOX_UNIT_DIR"
            echo ready
            for _ in $(seq 1 300); do [ -e \(release) ] && exit 7; sleep 0.1; done
            exit 1
            """
        return try TestProcess(["/bin/bash", SystemdSandbox.script, "--", "/bin/bash", "-c", inside])
    }

    /// Every cgroup directory of the sandbox started as `pid`, in every hierarchy.
    static func cgroups(ofSandbox pid: pid_t) throws -> [String] {
        let found = try TestProcess.run(["/usr/bin/find", "/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", "baton-sdsandbox-\(pid)-*"])
        return found.stdout.split(separator: "\n").map(String.init)
    }

    /// The test's own memory cgroup (hybrid machines: the v1 memory hierarchy).
    static var ownMemoryCgroup: String? {
        guard let text = ProcFS.read("/proc/self/cgroup"), let path = (try? CgroupMembership.parse(text))?.v1MemoryPath else { return nil }
        return "/sys/fs/cgroup/memory" + (path == "/" ? "" : path)
    }

    @Test("the manager runs, the command's exit status comes back, the run's cgroup is below the test's own and is removed")
    func runAndCleanUp() throws {
        let directory = TestPaths.temporaryDirectory("sandbox")
        defer { TestPaths.remove(directory) }
        let sandbox = try Self.start(release: directory + "/release")
        defer { _ = sandbox.stop(timeout: .seconds(20)) }
        try #require(sandbox.waitForStdout(containing: "ready\n", timeout: .seconds(30)), "\(sandbox.stderrLines)")
        #expect(sandbox.stdout.contains("state=running\n") || sandbox.stdout.contains("state=degraded\n"), "\(sandbox.stdout)")
        // Inside its own cgroup namespace the run's cgroup is the root.
        #expect(sandbox.stdout.contains("cgroup=0::/\n"), "\(sandbox.stdout)")

        let during = try Self.cgroups(ofSandbox: sandbox.pid)
        #expect(!during.isEmpty)
        if let memory = Self.ownMemoryCgroup {
            #expect(during.contains { $0.hasPrefix(memory + "/baton-sdsandbox-") }, "not below \(memory): \(during)")
        }

        TestPaths.write(directory + "/release", "")
        #expect(sandbox.wait(timeout: .seconds(30)) == 7, "\(sandbox.stderrLines)")
        #expect(try Self.cgroups(ofSandbox: sandbox.pid) == [])
    }

    @Test("SIGTERM mid-run: every process of the run is killed and its cgroups are removed")
    func terminated() throws {
        let directory = TestPaths.temporaryDirectory("sandbox")
        defer { TestPaths.remove(directory) }
        let sandbox = try Self.start(release: directory + "/never")
        defer { _ = sandbox.stop(timeout: .seconds(20)) }
        try #require(sandbox.waitForStdout(containing: "ready\n", timeout: .seconds(30)), "\(sandbox.stderrLines)")
        let groups = try Self.cgroups(ofSandbox: sandbox.pid)
        var pids: [pid_t] = []
        for group in groups {
            let procs = try TestProcess.run(["/bin/cat", group + "/cgroup.procs"]).stdout
            pids += procs.split(separator: "\n").compactMap { pid_t($0) }
        }
        // The manager, the shell inside and its sleep, unshare and PID 1 at least.
        #expect(Set(pids).count >= 4, "\(pids)")

        sandbox.signal(SIGTERM)
        #expect(sandbox.wait(timeout: .seconds(30)) == 143, "\(sandbox.stderrLines)")
        #expect(try Self.cgroups(ofSandbox: sandbox.pid) == [])
        // A cgroup is removed only once it is empty, so none of them is alive any more.
        let alive = Set(pids).filter { kill($0, 0) == 0 && !Self.isZombie($0) }
        #expect(alive.isEmpty, "still running: \(alive)")
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        ProcFS.read("/proc/\(pid)/stat").flatMap(ProcParsers.statFields)?.state == "Z"
    }
}
