import BatonCore
@testable import BatonDaemon
import BatonSystem
import CBatonLinux
import Glibc
import Synchronization

/// A clock the test moves by hand; the supervisor's `EventLoop` reads it.
final class ManualClock: Sendable {
    private let time = Mutex<Duration>(.seconds(1000))

    /// The current time.
    var now: Duration { time.withLock { $0 } }

    /// Moves the clock to `t` (never backwards).
    func set(_ t: Duration) { time.withLock { $0 = max($0, t) } }
}

/// A child the fake host "spawned": no process, only descriptors. Its pidfd is an eventfd,
/// which turns readable when the test ends the child, as a pidfd does when a process exits
/// (an eventfd, not a pipe: a fork elsewhere in the test process that inherits a pipe's write
/// end would hold its EOF back); it has a dup of the output pipe the supervisor gave it, to
/// print lines.
final class FakeChild {
    /// Its made-up pid (above the kernel's pid_max, so no /proc entry and no real process).
    let pid: pid_t
    /// What it handed to the supervisor as its pidfd (closed by the supervisor).
    let pidfd: Int32
    /// What the supervisor asked for.
    let request: SpawnRequest
    /// How it ended, once it did.
    private(set) var exit: CBatonLinuxShim.Exit?
    /// Whether the supervisor reaped it.
    fileprivate(set) var reaped = false
    /// Signals it received, in order (group and pidfd signals alike).
    fileprivate(set) var signals: [Int32] = []
    /// When true, the stop signal does not end it (only SIGKILL does).
    var ignoresStopSignal = false
    private var output: Int32

    fileprivate init(pid: pid_t, request: SpawnRequest) {
        self.pid = pid
        self.pidfd = CBatonLinux_eventfd()
        precondition(pidfd >= 0, "eventfd: \(errno)")
        self.request = request
        self.output = request.stdout >= 0 ? fcntl(request.stdout, F_DUPFD_CLOEXEC, 0) : -1
    }

    deinit {
        if output >= 0 { close(output) }
    }

    /// The value of `NAME` in its environment.
    func environment(_ name: String) -> String? {
        request.environment.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    /// The slot of a worker (nil for a probe).
    var slot: Int? { environment("BATON_SLOT").flatMap { Int($0) } }
    /// The release folder it runs in.
    var release: String? { request.directory }
    /// Whether it still runs.
    var isRunning: Bool { exit == nil }

    /// Writes one line of output, as the worker would on stdout.
    func print(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(output, $0.baseAddress, $0.count) }
    }

    /// Ends the child: its pidfd turns readable at the next pump of the loop.
    func end(_ status: CBatonLinuxShim.Exit) {
        guard exit == nil else { return }
        exit = status
        // The supervisor closes the pidfd once it reaped the child; until then it stays readable.
        var one: UInt64 = 1
        _ = write(pidfd, &one, 8)
        if output >= 0 {
            close(output)
            output = -1
        }
    }

    fileprivate func receive(_ signal: Int32, stopSignal: Int32) {
        signals.append(signal)
        guard exit == nil else { return }
        if signal == SIGKILL {
            end(.signaled(SIGKILL))
        } else if signal == stopSignal, !ignoresStopSignal {
            end(.exited(0))
        }
    }
}

/// Records what the supervisor tells the service manager.
final class RecordingNotifier: ServiceNotifying {
    /// Every message, in order.
    private(set) var messages: [String] = []
    let isEnabled = true
    let watchdogPingInterval: Duration? = nil
    func notify(_ message: String) { messages.append(message) }
    func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    func reloading(status: String) { notify("RELOADING=1\nSTATUS=\(status)") }
    func storeFD(_ fd: Int32, name: String) -> Bool { false }
    func removeStoredFD(name: String) {}
    func extendTimeout(_ extra: Duration) {}
}

/// Memory figures the test sets: every worker tree reads `worker`, the host reads `host`
/// (unset: unreadable, as on a host without /proc/meminfo).
final class FakeMemory: MemoryReading {
    private let figures = Mutex<(host: MemoryReadings?, worker: MemorySample?)>((nil, nil))
    private let reads = Mutex<[pid_t: Int]>([:])

    /// How many detailed reads (smaps_rollup: a walk of the page tables) each pid had.
    func detailedReads(of pid: pid_t) -> Int { reads.withLock { $0[pid, default: 0] } }

    /// What every worker tree reads.
    var worker: MemorySample? {
        get { figures.withLock { $0.worker } }
        set { figures.withLock { $0.worker = newValue } }
    }

    /// What the host reads.
    var host: MemoryReadings? {
        get { figures.withLock { $0.host } }
        set { figures.withLock { $0.host = newValue } }
    }

    func treeMemory(of pid: pid_t, detailed: Bool) -> MemorySample? {
        if detailed { reads.withLock { $0[pid, default: 0] += 1 } }
        return worker
    }

    func hostReadings() throws(MemoryReadError) -> MemoryReadings {
        guard let host else { throw .unreadable(path: "/proc/meminfo", errno: ENOENT) }
        return host
    }
}

/// The supervisor's port with no process behind it: every spawn makes a `FakeChild`; signals
/// end children the way a cooperative worker would (the stop signal: exit 0; SIGKILL).
final class FakeHost: SupervisorHost {
    private(set) var children: [FakeChild] = []
    let recorder = RecordingNotifier()
    var notifier: any ServiceNotifying { recorder }
    let fakeMemory = FakeMemory()
    var memory: any MemoryReading { fakeMemory }
    /// The state directory, in memory.
    let store = MemoryStore()
    func openStateStore(_ directory: String) throws(DirectoryError) -> any ReleaseStore { store }
    /// The stop signal cooperative children exit on.
    var stopSignal: Int32 = SIGTERM
    /// When set, spawns fail with it (a missing executable, say).
    var spawnError: SpawnError?
    /// Called with each new child: a test makes a release's workers crash here.
    var onSpawn: ((FakeChild) -> Void)?
    private var nextPID: pid_t = 5_000_000

    func spawn(_ request: SpawnRequest) throws -> SpawnedProcess {
        if let spawnError { throw spawnError }
        nextPID += 1
        let child = FakeChild(pid: nextPID, request: request)
        children.append(child)
        onSpawn?(child)
        return SpawnedProcess(pid: child.pid, pidfd: child.pidfd)
    }

    func signalGroup(_ group: pid_t, _ signal: Int32) {
        children.last { $0.pid == group }?.receive(signal, stopSignal: stopSignal)
    }

    func signal(pidfd: Int32, _ signal: Int32) {
        live(pidfd: pidfd)?.receive(signal, stopSignal: stopSignal)
    }

    func exitStatus(pidfd: Int32, reap: Bool) -> CBatonLinuxShim.Exit? {
        guard let child = live(pidfd: pidfd), let exit = child.exit else { return nil }
        if reap { child.reaped = true }
        return exit
    }

    /// The child behind an open pidfd (descriptor numbers are reused once the supervisor closes one).
    private func live(pidfd: Int32) -> FakeChild? { children.last { $0.pidfd == pidfd && !$0.reaped } }

    /// Workers (not probes) ever spawned for `slot`, oldest first.
    func workers(slot: Int) -> [FakeChild] { children.filter { $0.slot == slot } }

    /// The child with `pid`.
    func child(_ pid: pid_t) -> FakeChild? { children.first { $0.pid == pid } }
}

/// The state directory in memory; a test makes a write fail by setting its error.
final class MemoryStore: ReleaseStore {
    private struct Contents {
        var releaseState: ReleaseState?
        var history: [HistoryEntry] = []
        var deployed: [String] = []
        var inProgress: HistoryEntry?
        var saveError: SystemError?
        var beginError: SystemError?
    }
    private let contents = Mutex(Contents())

    /// The persisted release state.
    var releaseState: ReleaseState? { contents.withLock { $0.releaseState } }
    /// The deploy in progress, as a baton killed now would leave it.
    var inProgress: HistoryEntry? {
        get { contents.withLock { $0.inProgress } }
        set { contents.withLock { $0.inProgress = newValue } }
    }
    /// When set, `save` (the commit) fails with it.
    var saveError: SystemError? {
        get { contents.withLock { $0.saveError } }
        set { contents.withLock { $0.saveError = newValue } }
    }
    /// When set, `beginDeploy` fails with it.
    var beginError: SystemError? {
        get { contents.withLock { $0.beginError } }
        set { contents.withLock { $0.beginError = newValue } }
    }

    func loadDeployedReleases() -> [String] { contents.withLock { $0.deployed } }
    func saveDeployedReleases(_ folders: [String]) throws(SystemError) { contents.withLock { $0.deployed = folders } }
    func loadReleaseState() throws(SystemError) -> ReleaseState? { releaseState }
    func keepCorruptReleaseState() throws(SystemError) -> String { "release.json.corrupt" }
    func checkWritable() throws(SystemError) {}
    func save(_ state: ReleaseState) throws(SystemError) {
        if let error = saveError { throw error }
        contents.withLock { $0.releaseState = state }
    }
    func append(_ entry: HistoryEntry) throws(SystemError) { contents.withLock { $0.history.append(entry) } }
    func loadHistory() -> [HistoryEntry] { contents.withLock { $0.history } }
    func beginDeploy(_ entry: HistoryEntry) throws(SystemError) {
        if let error = beginError { throw error }
        contents.withLock { $0.inProgress = entry }
    }
    func finishDeploy() { contents.withLock { $0.inProgress = nil } }
    func takeUnfinishedDeploy() -> HistoryEntry? {
        contents.withLock { c in
            defer { c.inProgress = nil }
            return c.inProgress
        }
    }
}
