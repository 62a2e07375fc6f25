import BatonCore
import BatonSystem
import Glibc

/// The one port through which the supervisor's worker and operation code acts on the system:
/// spawning processes (workers, readiness and liveness probes, the upgrade check), signalling
/// process groups and pidfds, reading a child's exit, telling the service manager, reading
/// memory figures and the process table, opening the state directory, and reading the files
/// and accounts a worker's spec and the control socket name.
///
/// `LinuxSupervisorHost` is the real one (BatonSystem underneath). The tests of BatonDaemon
/// give the supervisor a fake whose children are descriptors without a process: the test
/// says when one exits and how, and the supervisor's timers run on an `EventLoop` with a
/// manual clock that the test advances and pumps (`EventLoop.pump()`), so deploys,
/// rollbacks, crash loops and the overlap rules run in milliseconds with no process.
/// See docs/ARCHITECTURE.md, "Test layers".
protocol SupervisorHost: AnyObject {
    /// Starts a process; its pidfd (owned by what is returned) becomes readable when it exits.
    func spawn(_ request: SpawnRequest) throws -> ChildProcess
    /// Starts a mold (mold mode): `request` plus the mold's end of its channel, placed after
    /// `request.passFDs` (`BATON_MOLD_FD` in its environment names that number).
    func startMold(_ request: SpawnRequest) throws -> (process: ChildProcess, link: any MoldLink)
    /// Signals a whole process group (a worker's tree).
    func signalGroup(_ group: pid_t, _ signal: Int32)
    /// Signals exactly the process behind `pidfd` (never a reused pid).
    func signal(pidfd: Int32, _ signal: Int32)
    /// How the process behind `pidfd` ended, or nil while it runs; `reap: false` leaves the
    /// zombie (its pid, and so its process group id, stays reserved).
    func exitStatus(pidfd: Int32, reap: Bool) -> CBatonLinuxShim.Exit?
    /// The reap of the exited child `pid` (its status already read, `reap: false`), to run on
    /// a thread other than the loop's: the kernel frees an exited process's `/proc` entries in
    /// the `waitid` that reaps it, which took up to 18 s on a busy host (docs/ARCHITECTURE.md,
    /// *The event loop*). Until it ran, the stray reaping on SIGCHLD leaves the zombie
    /// alone. nil: nothing to reap (the fake host).
    func reaper(of pid: pid_t) -> (@Sendable () -> Void)?
    /// sd_notify to the service manager (a no-op outside systemd).
    var notifier: any ServiceNotifying { get }
    /// Memory figures of worker trees and of the host (callable off the loop).
    var memory: any MemoryReading { get }
    /// Process trees, states and start times (callable off the loop).
    var processes: any ProcessTable { get }
    /// The `oom_kill` counter of baton's memory cgroup; throws when baton's cgroup has none.
    func openOOMCounter() throws(MemoryReadError) -> any OOMCounting
    /// The kernel log, for the victims of OOM kills (not open when unreadable: `openError`).
    func openKernelLog() -> any OOMKillLog
    /// The state directory (created if needed; refused when others may write in it).
    func openStateStore(_ directory: String) throws(DirectoryError) -> any ReleaseStore
    /// CPU time the tree rooted at `pid` used so far (reaped children included), and the time
    /// its threads waited for a CPU; nil when unknown.
    func treeCPUTime(of pid: pid_t) -> ProcessPriority.CPUTime?
    /// Gives every thread of the tree rooted at `pid` the nice value `nice`; false when some
    /// thread could not be set.
    func setPriority(tree pid: pid_t, nice: Int32) -> Bool
    /// A pidfd naming `pid`, a process baton did not start (a crashed baton's orphaned worker).
    func openPidfd(of pid: pid_t) throws(SystemError) -> Int32
    /// A close-on-exec duplicate of descriptor `target` of the process behind `pidfd`
    /// (pidfd_getfd: an orphan's listening socket or output pipe), owned: closed when dropped,
    /// so a descriptor that fails its check is closed on every way out.
    func takeDescriptor(pidfd: Int32, target: Int32) throws(SystemError) -> OwnedDescriptor
    /// Descriptors baton has open now and its `RLIMIT_NOFILE` soft limit (nil when unknown or
    /// unlimited): how wide a rollout's batch may be (``DescriptorRoom``).
    func descriptorUse() -> (open: Int, limit: Int)?
    /// The files the supervisor reads and writes itself: `[app] environment_file` (read at each
    /// spec: a deploy picks up its edits) and `instance.json`.
    var files: any HostFiles { get }
    /// The uid, gid and supplementary groups of `user` (with `group`, that group instead of
    /// the user's), or baton's own uid with `group`'s gid when only a group is given; nil when
    /// neither is (workers run as baton). Throws when the user or group does not exist.
    func credentials(user: String?, group: String?) throws(SpawnError) -> Credentials?
    /// The id of group `name` (a number stands for itself): the control socket's `[control]
    /// group` and `read_group`. Throws when no such group exists.
    func groupID(_ name: String) throws(SpawnError) -> gid_t
    /// The wall clock (seconds since the epoch): what the kernel's receive times of notify
    /// datagrams are compared with.
    var wallTime: Double { get }
}

/// Memory figures: a worker tree's (statm, smaps_rollup) and the host's (meminfo, overcommit,
/// baton's cgroup). Sendable: worker trees are read on the offload pool.
protocol MemoryReading: Sendable {
    /// The tree rooted at `pid` (RSS; with `detailed`, PSS and USS too), nil when it is gone.
    func treeMemory(of pid: pid_t, detailed: Bool) -> MemorySample?
    /// The tree rooted at `pid`: its members and their summed PSS/USS, in one walk (nil when gone).
    func treeMembers(of pid: pid_t) -> (pids: Set<Int32>, memory: MemorySample?)
    /// The host's figures and baton's own cgroup.
    func hostReadings() throws(MemoryReadError) -> MemoryReadings
    /// KSM figures summed over the tree rooted at `pid` (/proc/PID/ksm_stat), nil when gone.
    func treeKSM(of pid: pid_t) -> KSMStat?
    /// The content of /sys/kernel/mm/ksm/run, nil when the kernel has no KSM.
    func ksmRun() -> String?
    /// The commit charge of the tree rooted at `pid` (private writable mappings, from
    /// /proc/PID/maps), nil when gone.
    func treeCommitCharge(of pid: pid_t) -> UInt64?
}

extension MemoryReading {
    /// No KSM figures (the tests' fakes).
    func treeKSM(of pid: pid_t) -> KSMStat? { nil }
    /// No KSM (the tests' fakes).
    func ksmRun() -> String? { nil }
    /// No commit charge known (the tests' fakes).
    func treeCommitCharge(of pid: pid_t) -> UInt64? { nil }
}

/// The real figures: /proc and the cgroup filesystem.
struct ProcMemoryReader: MemoryReading {
    func treeMemory(of pid: pid_t, detailed: Bool) -> MemorySample? { ProcFS.treeMemory(of: pid, detailed: detailed) }
    func treeMembers(of pid: pid_t) -> (pids: Set<Int32>, memory: MemorySample?) {
        var pids = Set<Int32>()
        var total: MemorySample?
        for member in ProcFS.tree(of: pid) {
            guard let m = ProcFS.memory(of: member, detailed: true) else { continue }
            pids.insert(member)
            total = total.map { $0 + m } ?? m
        }
        return (pids, total)
    }
    func hostReadings() throws(MemoryReadError) -> MemoryReadings { try HostMemoryReader().readings(cgroupOf: getpid()) }
    func treeKSM(of pid: pid_t) -> KSMStat? { ProcFS.treeKSM(of: pid) }
    func ksmRun() -> String? { ProcFS.ksmRun() }
    func treeCommitCharge(of pid: pid_t) -> UInt64? { CommitChargeReader().tree(of: pid) }
}

/// What the supervisor tells the service manager: `ServiceNotifier` (sd_notify) in baton,
/// a recorder in tests.
protocol ServiceNotifying {
    /// Whether a notify socket was given.
    var isEnabled: Bool { get }
    /// How often to send WATCHDOG=1, when systemd's watchdog is on.
    var watchdogPingInterval: Duration? { get }
    /// Sends one message ("READY=1", "STATUS=...").
    func notify(_ message: String)
    /// READY=1 with a status line.
    func ready(status: String)
    /// RELOADING=1 with a status line.
    func reloading(status: String)
    /// Hands `fd` to systemd's FD store under `name`; false outside systemd.
    func storeFD(_ fd: Int32, name: String) -> Bool
    /// Removes `name` from systemd's FD store.
    func removeStoredFD(name: String)
    /// EXTEND_TIMEOUT_USEC= for a start or reload step under way.
    func extendTimeout(_ extra: Duration)
    /// Why messages began to fail, once (nil: nothing new).
    func takeFailure() -> String?
}

extension ServiceNotifying {
    /// Nothing fails (the tests' recorders).
    func takeFailure() -> String? { nil }
}

extension ServiceNotifier: ServiceNotifying {}

/// The real port: processes through a `ProcessLauncher` (clone/execve in the C shim), signals
/// and exits through pidfds and kill(2), sd_notify through `ServiceNotifier`, memory and the
/// process table from /proc, the state directory through `StateStore`, files from disk.
final class LinuxSupervisorHost: SupervisorHost {
    private let launcher: any ProcessLauncher
    let notifier: any ServiceNotifying
    let memory: any MemoryReading = ProcMemoryReader()
    let processes: any ProcessTable = ProcProcessTable()
    let files: any HostFiles = LinuxHostFiles()

    /// A host spawning through `launcher`.
    init(launcher: any ProcessLauncher, notifier: any ServiceNotifying = ServiceNotifier()) {
        self.launcher = launcher
        self.notifier = notifier
    }

    func spawn(_ request: SpawnRequest) throws -> ChildProcess { try launcher.spawn(request) }

    func signalGroup(_ group: pid_t, _ signal: Int32) { CBatonLinuxShim.signalGroup(group, signal) }

    func signal(pidfd: Int32, _ signal: Int32) { CBatonLinuxShim.signal(pidfd: pidfd, signal) }

    func exitStatus(pidfd: Int32, reap: Bool) -> CBatonLinuxShim.Exit? { CBatonLinuxShim.exitStatus(pidfd: pidfd, reap: reap) }

    func reaper(of pid: pid_t) -> (@Sendable () -> Void)? {
        SelfReapedChildren.register(pid)
        return {
            CBatonLinuxShim.reap(pid)
            SelfReapedChildren.forget(pid)
        }
    }

    func openStateStore(_ directory: String) throws(DirectoryError) -> any ReleaseStore {
        let store: StateStore
        do {
            store = try StateStore(directory: directory)
        } catch {
            guard let readable = StateStore.readable(directory, refused: error) else { throw error }
            store = readable
        }
        try store.lock()
        return store
    }

    func openOOMCounter() throws(MemoryReadError) -> any OOMCounting { try OOMCounterReader() }

    func openKernelLog() -> any OOMKillLog { KernelLogReader() }

    func treeCPUTime(of pid: pid_t) -> ProcessPriority.CPUTime? { ProcessPriority.cpuTime(tree: pid) }

    func setPriority(tree pid: pid_t, nice: Int32) -> Bool { ProcessPriority.set(tree: pid, to: nice) == 0 }

    func openPidfd(of pid: pid_t) throws(SystemError) -> Int32 { try CBatonLinuxShim.pidfdOpen(pid) }

    func takeDescriptor(pidfd: Int32, target: Int32) throws(SystemError) -> OwnedDescriptor {
        try CBatonLinuxShim.takeDescriptor(pidfd: pidfd, target: target)
    }

    func descriptorUse() -> (open: Int, limit: Int)? {
        let limit = DescriptorLimit.soft
        guard limit > 0, limit <= UInt64(Int32.max), let names = Filesystem.entryNames(of: "/proc/self/fd") else { return nil }
        // Less "." and "..", and the descriptor that listed them.
        return (max(0, names.count - 3), Int(limit))
    }

    func credentials(user: String?, group: String?) throws(SpawnError) -> Credentials? {
        try Accounts.workerCredentials(user: user, group: group)
    }

    func groupID(_ name: String) throws(SpawnError) -> gid_t { try Accounts.groupID(name) }

    var wallTime: Double { wallClockNow() }
}

extension SupervisorHost {
    /// Whether the group leader `pid` behind `pidfd` has exited. If it has, what is left of
    /// its process group gets SIGKILL first, while its zombie still holds the pid (so the
    /// group id cannot name another group yet); the caller then reaps it.
    func killGroupIfLeaderExited(pid: pid_t, pidfd: Int32) -> Bool {
        guard exitStatus(pidfd: pidfd, reap: false) != nil else { return false }
        signalGroup(pid, SIGKILL)
        return true
    }

    /// A worker's signal: to the process group it made (its children are in it; while the
    /// worker's pid is held, that group id can name no other group) and, through `pidfd`, to
    /// the worker itself when it moved to another group (setpgid): a hostile-app audit saw
    /// such a worker miss every stop signal and SIGKILLed at the stop timeout, its requests cut
    /// (3 of 3 reloads and stops). A worker in its group gets the signal once: a second
    /// SIGTERM or SIGINT means "now" to some apps.
    func signalWorker(pid: pid_t, pidfd: Int32, _ sig: Int32) {
        signalGroup(pid, sig)
        if let group = processes.processGroup(of: pid), group != pid { signal(pidfd: pidfd, sig) }
    }

    /// Signals the process group `pid` leads, if it leads one (its pid is the group id while it
    /// runs), else the process itself through `pidfd` (SIGKILL goes both ways): a process baton
    /// did not start (an orphan, a stray) or one that left its worker's group. A stop signal
    /// reaches the process once (an orphan leading its group got two SIGTERMs).
    func signalProcessAndGroup(pid: pid_t, pidfd: Int32, _ sig: Int32) {
        let leads = processes.processGroup(of: pid) == pid
        if leads { signalGroup(pid, sig) }
        if !leads || sig == SIGKILL { signal(pidfd: pidfd, sig) }
    }
}
