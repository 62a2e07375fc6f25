import BatonSystem
import BatonTestSupport
import Glibc

/// Demo workers started directly (not through baton) for the sampling-cost scenario, each in
/// its own process group (the launcher calls setsid). Always reaped: `stop()` kills every group
/// and waits for each child; SIGINT/SIGTERM/SIGHUP to the bench kill them too (being session
/// leaders, they would not get the terminal's Ctrl-C), so no worker outlives a run.
final class WorkerPool {
    /// Process ids (each also its process group id).
    private(set) var pids: [pid_t] = []
    /// The workers, each owning its pidfd.
    private var children: [ChildProcess] = []
    /// Where every worker's stderr goes (one file, read back when something fails).
    private let logPath: String

    /// Starts `count` demo workers with `arguments` (after `--listen 127.0.0.1:0`), passing
    /// `passFDs` at 3, 4, ...; stops the ones already started if one cannot be spawned.
    init(count: Int, arguments: [String], passFDs: [Int32] = [], logPath: String) throws {
        self.logPath = logPath
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw BenchError("cannot open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        let argv = [TestPaths.executable("baton-demo-worker"), "--listen", "127.0.0.1:0"] + arguments
        ChildGuard.install()
        do {
            for _ in 0..<count {
                let p = try LinuxProcessLauncher().spawn(
                    SpawnRequest(argv: argv, environment: TestPaths.cleanEnvironment(), passFDs: passFDs, stdout: log, stderr: log))
                pids.append(p.pid)
                children.append(p)
                ChildGuard.add(p.pid)
            }
        } catch {
            stop()
            throw BenchError("spawning demo worker \(pids.count + 1) of \(count): \(error)")
        }
    }

    /// Waits until every worker's RSS (statm) reaches `bytes`, up to `timeout`; throws with the
    /// workers' log tail if one exits or the time runs out.
    func waitUntilResident(_ bytes: UInt64, timeout: Duration) throws {
        let deadline = monotonicNow() + timeout
        var pending = Set(pids.indices)
        while !pending.isEmpty {
            for index in pending.sorted() {
                if let exit = CBatonLinuxShim.exitStatus(pidfd: children[index].pidfd, reap: false) {
                    throw BenchError("demo worker \(pids[index]) exited (\(exit)) before holding its memory:\n\(logTail())")
                }
                if let m = ProcFS.memory(of: pids[index], detailed: false), m.rss >= bytes { pending.remove(index) }
            }
            if pending.isEmpty { break }
            guard monotonicNow() < deadline else {
                throw BenchError("\(pending.count) of \(pids.count) demo workers below \(bytes >> 20) MiB after \(timeout):\n\(logTail())")
            }
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 0, 50)
        }
    }

    /// SIGKILL to every worker's group, then reaps each one (bounded wait per child).
    func stop() {
        for (pid, child) in zip(pids, children) {
            CBatonLinuxShim.signal(pidfd: child.pidfd, SIGKILL)
            // Safe while unreaped: the zombie keeps the pid (and group id) reserved.
            CBatonLinuxShim.signalGroup(pid, SIGKILL)
        }
        for (pid, child) in zip(pids, children) {
            let deadline = monotonicNow() + .seconds(10)
            while CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true) == nil, monotonicNow() < deadline {
                var pfd = pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, 100)
            }
            child.close()
            ChildGuard.remove(pid)
        }
        pids = []
        children = []
    }

    deinit { stop() }

    /// The last lines the workers wrote.
    private func logTail() -> String {
        let lines = (ProcFS.read(logPath) ?? "").split(separator: "\n")
        return lines.suffix(10).joined(separator: "\n")
    }
}

/// Kills the bench's direct children's process groups when the bench is interrupted. A signal
/// handler may only touch plain memory, so the pids live in a fixed C array.
enum ChildGuard {
    private static let capacity = 4096
    nonisolated(unsafe) private static let table: UnsafeMutablePointer<pid_t> = {
        let p = UnsafeMutablePointer<pid_t>.allocate(capacity: capacity)
        p.initialize(repeating: 0, count: capacity)
        return p
    }()
    nonisolated(unsafe) private static var installed = false

    /// Installs the handler for SIGINT, SIGTERM and SIGHUP (once).
    static func install() {
        guard !installed else { return }
        installed = true
        _ = table
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                for i in 0..<ChildGuard.capacity where ChildGuard.table[i] > 0 { kill(-ChildGuard.table[i], SIGKILL) }
                _exit(128 + sig)
            }
            sigemptyset(&action.sa_mask)
            sigaction(sig, &action, nil)
        }
    }

    /// Records a child (its pid is its process group id).
    static func add(_ pid: pid_t) {
        if let slot = (0..<capacity).first(where: { table[$0] == 0 }) { table[slot] = pid }
    }

    /// Forgets a reaped child.
    static func remove(_ pid: pid_t) {
        if let slot = (0..<capacity).first(where: { table[$0] == pid }) { table[slot] = 0 }
    }
}
