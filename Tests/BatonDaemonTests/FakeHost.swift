import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc

/// The supervisor's port with no process behind it: every spawn makes a `FakeChild`; signals
/// end children the way a cooperative worker would (the stop signal: exit 0; SIGKILL).
final class FakeHost: SupervisorHost {
    private(set) var children: [FakeChild] = []
    let recorder = RecordingNotifier()
    var notifier: any ServiceNotifying { recorder }
    let fakeMemory = FakeMemory()
    var memory: any MemoryReading { fakeMemory }
    let fakeProcesses = FakeProcessTable()
    var processes: any ProcessTable { fakeProcesses }
    /// baton's memory cgroup's OOM counter and kernel log; nil: no counter (as in a cgroup
    /// without one), so the OOM watch stays off.
    var oom: FakeOOM?
    func openOOMCounter() throws(MemoryReadError) -> any OOMCounting {
        guard let oom else { throw .unreadable(path: "/fake/memory.events", errno: ENOENT) }
        return oom
    }
    func openKernelLog() -> any OOMKillLog { oom ?? FakeOOM() }
    /// The state directory, in memory.
    let store = MemoryStore()
    /// When set, opening the state directory fails with it (another baton holds it).
    var openStateStoreError: DirectoryError?
    func openStateStore(_ directory: String) throws(DirectoryError) -> any ReleaseStore {
        if let openStateStoreError { throw openStateStoreError }
        store.reopen()
        return store
    }
    /// The stop signal cooperative children exit on.
    var stopSignal: Int32 = SIGTERM
    /// When set, spawns fail with it (a missing executable, say).
    var spawnError: SpawnError?
    /// Spawns in these folders fail with their error (a release folder that is gone).
    var spawnErrorsByDirectory: [String: SpawnError] = [:]
    /// When true, each new child's pidfd is one the loop cannot watch (`FakeChild`).
    var unwatchablePidfds = false
    /// Called with each new child: a test makes a release's workers crash here.
    var onSpawn: ((FakeChild) -> Void)?
    private var nextPID: pid_t = 5_000_000

    /// What each spawn that failed with `spawnError` was handed, as open files
    /// (`openFile(of:)`), read before the spawn failed: its output pipe (stdout) and its
    /// notify socket (the one bound at its NOTIFY_SOCKET), nil where it had none.
    private(set) var failedSpawns: [(output: String?, notify: String?)] = []

    func spawn(_ request: SpawnRequest) throws -> ChildProcess {
        if let spawnError = spawnError ?? spawnErrorsByDirectory[request.directory ?? ""] {
            let notifyPath = request.environment.first { $0.hasPrefix("NOTIFY_SOCKET=") }?.dropFirst("NOTIFY_SOCKET=".count)
            failedSpawns.append(
                (output: request.stdout >= 0 ? openFile(of: request.stdout) : nil, notify: notifyPath.flatMap { unixSocketFile(boundAt: String($0)) }))
            throw spawnError
        }
        nextPID += 1
        let child = FakeChild(pid: nextPID, request: request, watchable: !unwatchablePidfds)
        children.append(child)
        onSpawn?(child)
        return ChildProcess(pid: child.pid, pidfd: OwnedDescriptor(child.pidfd))
    }

    /// When set, a mold's spawn requests fail with it (a mold that cannot fork, or times out).
    var moldSpawnError: MoldError?
    /// When it gives a pid, a mold answers a spawn request with that existing child (a lying
    /// or broken mold: its own pid, or a worker's) instead of forking one.
    var moldAnswer: ((_ mold: FakeChild) -> pid_t?)?

    /// A mold is a child like a worker (BATON_SLOT=mold, so no slot), whose link forks more
    /// children through this host while the mold runs.
    func startMold(_ request: SpawnRequest) throws -> (process: ChildProcess, link: any MoldLink) {
        let process = try spawn(request)
        return (process, FakeMoldLink(host: self, mold: child(process.pid)!))
    }

    /// Molds ever started, oldest first.
    var molds: [FakeChild] { children.filter { $0.environment("BATON_SLOT") == "mold" } }

    /// Process groups signalled, in order.
    private(set) var groupSignals: [(group: pid_t, signal: Int32)] = []

    func signalGroup(_ group: pid_t, _ signal: Int32) {
        groupSignals.append((group, signal))
        // A child that moved to another group (`fakeProcesses.setProcessGroup`) is not in it.
        guard let leader = children.last(where: { $0.pid == group }), (fakeProcesses.processGroup(of: group) ?? group) == group else { return }
        leader.receive(signal, stopSignal: stopSignal)
    }

    func signal(pidfd: Int32, _ signal: Int32) {
        live(pidfd: pidfd)?.receive(signal, stopSignal: stopSignal)
    }

    /// Children reaped in `exitStatus(pidfd:reap: true)`, on the loop (a slow reap there
    /// holds everything: `SupervisorReapTests`).
    private(set) var reapedOnTheLoop: [pid_t] = []
    /// Children whose reap the supervisor asked for off the loop (`reaper(of:)`).
    private(set) var reapedOffTheLoop: [pid_t] = []

    func exitStatus(pidfd: Int32, reap: Bool) -> CBatonLinuxShim.Exit? {
        guard let child = live(pidfd: pidfd), let exit = child.exit else { return nil }
        if reap {
            child.reaped = true
            reapedOnTheLoop.append(child.pid)
        }
        return exit
    }

    /// Nothing to reap (no process): marks the child reaped, as the reaper thread would.
    func reaper(of pid: pid_t) -> (@Sendable () -> Void)? {
        children.last { $0.pid == pid && !$0.reaped }?.reaped = true
        reapedOffTheLoop.append(pid)
        return nil
    }

    /// The child behind an open pidfd (descriptor numbers are reused once the supervisor closes one).
    private func live(pidfd: Int32) -> FakeChild? { children.last { $0.pidfd == pidfd && !$0.reaped } }

    /// Workers (not probes) ever spawned for `slot`, oldest first.
    func workers(slot: Int) -> [FakeChild] { children.filter { $0.slot == slot } }

    /// The child with `pid`.
    func child(_ pid: pid_t) -> FakeChild? { children.first { $0.pid == pid } }

    /// What `treeCPUTime` reads (unset: nothing, no process and no CPU time, so the boot
    /// budget stays one boot per CPU).
    var cpuTime: ((pid_t) -> ProcessPriority.CPUTime?)?
    func treeCPUTime(of pid: pid_t) -> ProcessPriority.CPUTime? { cpuTime?(pid) }

    /// The files the supervisor reads and writes (the environment file, `instance.json`), in memory.
    let fakeFiles = MemoryFiles()
    var files: any HostFiles { fakeFiles }

    /// A process a previous baton left (take-over): a child this host did not spawn, whose
    /// pidfd `openPidfd` hands over and whose descriptors (`descriptors`, by number) the
    /// supervisor may take.
    @discardableResult
    func addOrphan(pid: pid_t, slot: Int, descriptors: [Int32: Int32] = [:], watchable: Bool = true) -> FakeChild {
        let child = FakeChild(pid: pid, request: SpawnRequest(argv: ["/srv/worker"], environment: ["BATON_SLOT=\(slot)"]), watchable: watchable)
        children.append(child)
        orphanDescriptors[pid] = descriptors
        return child
    }
    private var orphanDescriptors: [pid_t: [Int32: Int32]] = [:]

    /// The running child's own pidfd (the supervisor owns it from now on, as after a spawn).
    func openPidfd(of pid: pid_t) throws(SystemError) -> Int32 {
        guard let child = children.last(where: { $0.pid == pid && $0.isRunning }) else {
            throw SystemError("pidfd_open", errno: ESRCH, subject: "pid \(pid)")
        }
        return child.pidfd
    }

    /// What `descriptorUse()` answers, asked each time (nil: unknown, no bound).
    var descriptors: (() -> (open: Int, limit: Int))?

    func descriptorUse() -> (open: Int, limit: Int)? { descriptors?() }

    /// A duplicate of what the test put at `target` in that orphan.
    func takeDescriptor(pidfd: Int32, target: Int32) throws(SystemError) -> OwnedDescriptor {
        guard let child = live(pidfd: pidfd), let fd = orphanDescriptors[child.pid]?[target] else {
            throw SystemError("pidfd_getfd", errno: EBADF, subject: "fd \(target)")
        }
        return OwnedDescriptor(try syscall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, 0) })
    }

    /// Accounts by user name; none exists unless the test adds it.
    var accounts: [String: Credentials] = [:]
    func credentials(user: String?, group: String?) throws(SpawnError) -> Credentials? {
        guard let user else { return nil }
        guard let found = accounts[user] else { throw SpawnError(step: "getpwnam \(user): no such user", errno: 0) }
        return found
    }

    /// Groups by name; none exists unless the test adds it (a number stands for itself).
    var groups: [String: gid_t] = [:]
    /// Added to the real wall clock: a test makes a notify datagram look sent that long ago.
    var wallClockAhead: Double = 0
    var wallTime: Double { wallClockNow() + wallClockAhead }

    func groupID(_ name: String) throws(SpawnError) -> gid_t {
        if let numeric = gid_t(name) { return numeric }
        guard let gid = groups[name] else { throw SpawnError(step: "unknown group \"\(name)\"", errno: 0) }
        return gid
    }

    /// Trees whose priority the supervisor set, with the nice value.
    private(set) var priorities: [(pid: pid_t, nice: Int32)] = []
    func setPriority(tree pid: pid_t, nice: Int32) -> Bool {
        priorities.append((pid, nice))
        return true
    }
}

/// A fake mold's channel: a spawn forks a `FakeChild` through the host while the mold runs.
final class FakeMoldLink: MoldLink {
    unowned let host: FakeHost
    let mold: FakeChild
    /// Spawn requests received, in order.
    private(set) var requests: [SpawnRequest] = []

    init(host: FakeHost, mold: FakeChild) {
        self.host = host
        self.mold = mold
    }

    func spawn(_ request: SpawnRequest, timeout: Duration) throws(MoldError) -> ChildProcess {
        requests.append(request)
        guard mold.isRunning else { throw MoldError("the mold closed its channel") }
        if let error = host.moldSpawnError { throw error }
        if let pid = host.moldAnswer?(mold), let existing = host.child(pid) {
            return ChildProcess(pid: pid, pidfd: OwnedDescriptor(dup(existing.pidfd)))
        }
        do {
            return try host.spawn(request)
        } catch {
            throw MoldError("the mold could not fork: \(error)")
        }
    }
}
