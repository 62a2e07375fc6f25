import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// The take-over of workers behind a shell without `exec`: the rest of a worker's process
/// group is part of it.
extension Integration.TakeOverTests {
    /// A shell running the demo worker without `exec` (its own LISTEN_PID given) beside a helper
    /// that ignores SIGTERM and writes its pid to `DIR/helper.SHELLPID`; the script's path.
    static func writeShellWithHelper(in directory: String) -> String {
        let worker = TestPaths.executable("baton-demo-worker")
        let script = directory + "/run.sh"
        TestPaths.write(
            script,
            "#!/bin/sh\n(trap '' TERM; exec sleep 300) &\necho $! > \(directory)/helper.$$\nsh -c 'LISTEN_PID=$$ exec \"$0\"' \(worker) &\nwait $!\nexit $?\n",
            mode: 0o755)
        return script
    }

    /// The helper the shell `shell` started (see ``writeShellWithHelper(in:)``).
    static func helper(in directory: String, of shell: pid_t) -> pid_t? {
        ProcFS.read(directory + "/helper.\(shell)").flatMap { Int32($0.filter(\.isNumber)) }
    }

    /// A re-audit: the take-over of a worker behind a shell without `exec` said "orphaned
    /// worker drained" 1 ms after the stop signal (the shell died of it) while its app
    /// drained unsupervised, and a helper of its group that ignores SIGTERM was never
    /// killed: it held the port after baton stopped, and the next `baton serve` failed.
    @Test("an orphan behind a shell without exec: the rest of its group is waited for and SIGKILLed at the stop timeout")
    func anOrphansGroupIsWaitedFor() throws {
        let scripts = TestPaths.temporaryDirectory("tkg-script")
        defer { TestPaths.remove(scripts) }
        let script = Self.writeShellWithHelper(in: scripts)
        let sections = BatonHarness.defaultSections.replacingOccurrences("timeout = \"10s\"", with: "timeout = \"1s\"")
        let first = try BatonHarness(workers: 1, command: [script], sections: sections, tag: "tkg")
        let shell = try #require(try first.status().workers.first?.pid)
        let helper = try #require(Self.helper(in: scripts, of: shell))
        let pidfd = ProcessWatch.open(helper)
        defer { close(pidfd) }
        defer { if ProcFS.read("/proc/\(helper)/cmdline")?.hasPrefix("sleep") == true { kill(helper, SIGKILL) } }
        first.process.signal(SIGKILL)
        #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)
        let second = try BatonHarness(workers: 1, command: [script], sections: sections, tag: "tkg", reuse: first.directory)
        defer { second.stop() }
        #expect(ProcessWatch.waitExit(pidfd, timeout: .seconds(30)), "the orphan's helper \(helper) still runs")
        let lines = second.process.stderrLines
        #expect(lines.contains { $0.contains("orphaned worker's own process exited; waiting for the rest of its group") }, "\(lines.suffix(20))")
        #expect(!lines.contains { $0.contains("orphaned worker drained") && $0.contains("pid=\(shell)") }, "\(lines.suffix(20))")
    }

    /// A re-audit 2: a baton killed while it waited for the rest of a draining worker's group
    /// (the shell gone): the next one took those processes for strays that "left their
    /// worker's" group; the app's drain ran past the stop timeout and the helper held the
    /// socket until that baton stopped.
    @Test("the rest of a worker's group whose shell is gone, found at a take-over, is drained as that worker's")
    func theRestOfAGroupWhoseLeaderIsGone() throws {
        let scripts = TestPaths.temporaryDirectory("tkm-script")
        defer { TestPaths.remove(scripts) }
        let script = Self.writeShellWithHelper(in: scripts)
        let sections = BatonHarness.defaultSections.replacingOccurrences("timeout = \"10s\"", with: "timeout = \"3s\"")
        let first = try BatonHarness(workers: 1, command: [script], sections: sections, tag: "tkm")
        let shell = try #require(try first.status().workers.first?.pid)
        let helper = try #require(Self.helper(in: scripts, of: shell))
        let pidfd = ProcessWatch.open(helper)
        defer { close(pidfd) }
        defer { if ProcFS.read("/proc/\(helper)/cmdline")?.hasPrefix("sleep") == true { kill(helper, SIGKILL) } }
        // A reload drains the shell's group: the shell dies at once, the helper does not.
        let reload = try TestProcess([TestPaths.executable("baton"), "reload", "--socket", first.controlSocket])
        defer { _ = reload.stop() }
        #expect(first.process.waitForLine(containing: "waiting for the rest of its group", timeout: .seconds(20)) != nil)
        first.process.signal(SIGKILL)
        #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)
        let second = try BatonHarness(workers: 1, command: [script], sections: sections, tag: "tkm", reuse: first.directory)
        defer { second.stop() }
        #expect(ProcessWatch.waitExit(pidfd, timeout: .seconds(30)), "the helper \(helper) of the dead worker's group still runs")
        let lines = second.process.stderrLines
        #expect(
            lines.contains { $0.contains("pid \(helper) holds a socket") && $0.contains("in the process group of its worker pid \(shell)") },
            "\(lines.suffix(20))")
        #expect(!lines.contains { $0.contains("pid \(helper) holds a socket") && $0.contains("it left its worker's") }, "\(lines.suffix(20))")
    }
}
