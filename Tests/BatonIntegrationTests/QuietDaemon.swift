import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// A real `baton serve` whose stderr goes where the test says (a pipe nobody
/// reads, /dev/null) instead of a reader thread: for workers that print more
/// than a test should keep in memory. It is driven through the `baton` CLI
/// only, so readiness is awaited with `baton status` instead of log lines.
final class QuietDaemon {
    /// The temp directory holding the config, sockets and state.
    let directory: String
    /// The control socket.
    let controlSocket: String
    /// The daemon.
    let process: ChildProcess
    private var exit: Int32?
    /// Worker pids (= their process groups) seen by `waitUntilReady`, killed by
    /// `cleanUp` if baton had to be SIGKILLed and could not stop them itself.
    private var workerPIDs: [pid_t] = []

    /// Writes a config (`[app]` basics, `[listen]` on 127.0.0.1:0, `sections`, `[control]` +
    /// `control`) and starts baton
    /// with `stderr` as its fd 2 (stdout goes to /dev/null).
    init(
        command: [String], workers: Int, stderr: Int32, directory release: String? = nil, extraApp: String = "",
        sections: String = "[readiness]\nmode = \"delay\"\ndelay = \"0s\"\n[stop]\ntimeout = \"5s\"", control: String = ""
    ) throws {
        directory = TestPaths.temporaryDirectory("q")
        controlSocket = directory + "/control.sock"
        let config = BatonHarness.configText(
            name: "quiet", command: command, release: release ?? directory, workers: workers, directory: directory, extraApp: extraApp,
            sections: "[listen]\naddresses = [\"127.0.0.1:0\"]\n" + sections, controlSocket: controlSocket, control: control)
        TestPaths.write(directory + "/baton.toml", config)
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(null) }
        process = try LinuxProcessLauncher().spawn(
            SpawnRequest(
                argv: [TestPaths.executable("baton"), "serve", "--config", directory + "/baton.toml"],
                environment: TestPaths.cleanEnvironment(), directory: nil, passFDs: [], setListenPID: false, stdout: null,
                stderr: stderr, credentials: nil))
    }

    /// Runs a client verb against this daemon.
    func cli(_ args: [String], timeout: Duration = .seconds(60)) throws -> CommandResult {
        try TestProcess.run([TestPaths.executable("baton"), args[0], "--socket", controlSocket] + args.dropFirst(), timeout: timeout)
    }

    /// `baton status --json` once every slot's worker is ready (polled: the
    /// daemon's log is not read), or nil after `timeout`.
    func waitUntilReady(workers: Int, timeout: Duration) throws -> (report: StatusReport, json: String)? {
        let deadline = monotonicNow() + timeout
        while monotonicNow() < deadline {
            let result = try cli(["status", "--json"], timeout: .seconds(30))
            if result.code == 0, let report = try? JSONDecoder().decode(StatusReport.self, from: Data(result.stdout.utf8)),
                report.workers.filter({ $0.state == "ready" }).count == workers
            {
                workerPIDs = report.workers.map(\.pid)
                return (report, result.stdout)
            }
            if exitCode != nil { return nil }
            pause(0.2)
        }
        return nil
    }

    /// The exit code once baton exited (reaps it), or nil while it runs.
    var exitCode: Int32? {
        if let exit { return exit }
        switch CBatonLinuxShim.exitStatus(pidfd: process.pidfd, reap: true) {
        case .exited(let c)?: exit = c
        case .signaled(let s)?: exit = 128 + s
        case nil: break
        }
        return exit
    }

    /// Waits (bounded, on the pidfd) for baton to exit; nil if it still runs.
    func wait(timeout: Duration) -> Int32? {
        let deadline = monotonicNow() + timeout
        while exitCode == nil {
            let left = deadline - monotonicNow()
            if left <= .zero { return nil }
            var pfd = pollfd(fd: process.pidfd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, Int32(clamping: min(left.components.seconds * 1000 + 1, 1000)))
        }
        return exitCode
    }

    /// SIGTERM; the exit code if baton ended within `timeout`, else nil.
    func terminate(timeout: Duration) -> Int32? {
        if exitCode == nil { _ = CBatonLinuxShim.signal(pidfd: process.pidfd, SIGTERM) }
        return wait(timeout: timeout)
    }

    /// Makes sure baton is gone (SIGKILL to the pid it was started as), and removes the temp directory.
    func cleanUp() {
        if exitCode == nil {
            _ = CBatonLinuxShim.signal(pidfd: process.pidfd, SIGKILL)
            _ = wait(timeout: .seconds(10))
            for pid in workerPIDs where pid > 0 { _ = CBatonLinuxShim.signalGroup(pid, SIGKILL) }
        }
        process.close()
        TestPaths.remove(directory)
    }

    /// True once `pid` is gone or a zombie (waits up to `timeout`).
    static func isGone(_ pid: pid_t, timeout: Duration) -> Bool {
        func gone() -> Bool {
            guard let stat = ProcFS.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
            return stat[close...].dropFirst(2).first == "Z"
        }
        let deadline = monotonicNow() + timeout
        while monotonicNow() < deadline {
            if gone() { return true }
            pause(0.05)
        }
        return gone()
    }
}
