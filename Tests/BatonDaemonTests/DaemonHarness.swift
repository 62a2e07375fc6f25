import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// The real `Supervisor` on an `EventLoop` that never runs on its own: the test advances a
/// manual clock and pumps the loop; workers are `FakeChild`ren of a `FakeHost`. Readiness is
/// `notify`, and the harness marks a starting worker ready when `autoReady` says so (the test
/// keeps one starting, or makes it exit, by saying no). The state directory is in memory
/// (`MemoryStore`); release folders and the runtime directory are real, in a temp folder. No
/// process is started.
final class DaemonHarness {
    let clock = ManualClock()
    let loop: EventLoop
    let host = FakeHost()
    let supervisor: Supervisor
    /// What the supervisor logged.
    let log = LogCapture()
    /// The temp folder holding everything.
    let root: String
    /// The release folder the workers start on.
    let initialRelease: String
    /// Whether a starting worker becomes ready when the clock moves (default: every one).
    var autoReady: (FakeChild) -> Bool = { _ in true }
    /// Whether `settle` waits for jobs off the loop (default); a test that holds one back on
    /// purpose (a commit whose write is blocked) turns it off meanwhile.
    var awaitsOffloads = true
    /// Whether a starting mold (mold mode) becomes ready when the clock moves (default: every one).
    var autoReadyMold: (FakeChild) -> Bool = { _ in true }

    init(workers: Int = 3, configure: (inout BatonConfig) -> Void = { _ in }) throws {
        var template = Array("/tmp/baton-daemon-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        initialRelease = root + "/r0"
        mkdir(initialRelease, 0o755)
        var config = BatonConfig.make(
            app: AppConfig(
                name: "fake", command: ["/srv/worker"], directory: initialRelease, workers: workers, startConcurrency: workers,
                runtimeDirectory: root + "/run", stateDirectory: root + "/state"))
        config.readiness = ReadinessConfig(mode: .notify, timeout: .seconds(30))
        config.deploy.strategy = .surge
        config.deploy.stabilityWindow = .seconds(2)
        configure(&config)
        let clock = self.clock
        loop = try EventLoop(now: { clock.now })
        host.fakeMemory.loopThread.withLock { $0 = pthread_self() }
        host.store.loopThread.withLock { $0 = pthread_self() }
        host.fakeProcesses.loopThread.withLock { $0 = pthread_self() }
        supervisor = Supervisor(
            options: .init(config: config, reloadConfig: nil, launcher: LinuxProcessLauncher(), environment: ["PATH=/usr/bin:/bin"]),
            loop: loop, host: host, logHandler: LogCapture.Handler(capture: log))
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// What `baton serve` does up to the first workers (no sockets, no signals): the runtime
    /// and state directories, then every slot's first worker; then the clock moves until each
    /// one that `autoReady` lets is ready.
    func start() throws {
        supervisor.runtimeDirectory = root + "/run"
        supervisor.notifyDirectory = root + "/run/notify"
        try supervisor.prepareRuntimeDirectory()
        try supervisor.lockRuntimeDirectory(refuse: true)
        try supervisor.loadState()
        supervisor.startSlots(spec: try supervisor.makeSpec(supervisor.config, release: supervisor.releaseState.current))
        advance(by: .zero)
    }

    /// A new release folder.
    func makeRelease(_ name: String) -> String {
        let path = root + "/" + name
        mkdir(path, 0o755)
        return path
    }

    /// Pumps the loop until nothing is ready or due at the current time (bounded).
    func settle() {
        for _ in 0..<10_000 {
            readyStartingWorkers()
            guard let ran = loop.pump() else {
                Issue.record("the loop failed: \(String(describing: loop.failure))")
                return
            }
            if ran == 0 && !hasWorkerToReady {
                guard loop.pendingOffloads > 0, awaitsOffloads else { return }
                // A job off the loop (a reload's config read): wait for its completion, bounded,
                // before the clock moves, as it would finish long before any timer in real life.
                guard let woke = loop.pump(waitingUpTo: 10_000), woke > 0 else {
                    Issue.record("an offloaded job did not finish within 10 s")
                    return
                }
            }
        }
        Issue.record("the loop never settled")
    }

    /// Waits for the reads off the loop to come back (an operation's start waits for its
    /// workers' memory read), bounded, and pumps their completions; no worker becomes ready
    /// and the clock stays: what a request does before the next event, as when the read
    /// was made on the loop.
    func awaitReads() {
        for _ in 0..<100 where loop.pendingOffloads > 0 {
            guard let woke = loop.pump(waitingUpTo: 10_000), woke > 0 else {
                Issue.record("an offloaded job did not finish within 10 s")
                return
            }
        }
    }

    /// Moves the clock by `delta`, firing every timer at its deadline on the way, in order.
    func advance(by delta: Duration) {
        let target = clock.now + delta
        settle()
        for _ in 0..<100_000 {
            guard let next = loop.nextTimerDeadline, next <= target else { break }
            clock.set(next)
            settle()
        }
        clock.set(target)
        settle()
    }

    /// Moves the clock until no operation runs or waits (at most `limit`).
    func finishOperations(limit: Duration = .seconds(600)) {
        let end = clock.now + limit
        while supervisor.operations.isBusy, supervisor.phase != .starting, clock.now < end {
            guard let next = loop.nextTimerDeadline else { break }
            advance(by: max(next - clock.now, .zero))
        }
    }

    private var startingWorkers: [Worker] {
        supervisor.slots.flatMap(\.workers).filter { $0.state == .starting }
    }

    /// Whether `worker` sends READY=1 now: a child that exited sends nothing.
    private func willReady(_ worker: Worker) -> Bool {
        guard let child = host.child(worker.pid), child.isRunning else { return false }
        return autoReady(child)
    }

    private var startingMolds: [Mold] {
        supervisor.moldBook.molds.filter { m in
            m.state == .starting && (host.child(m.pid).map { $0.isRunning && autoReadyMold($0) } ?? false)
        }
    }

    private var hasWorkerToReady: Bool { startingWorkers.contains(where: willReady) || !startingMolds.isEmpty }

    /// What READY=1 on a worker's notify socket does.
    private func readyStartingWorkers() {
        for mold in startingMolds { supervisor.moldBecameReady(mold) }
        for worker in startingWorkers where willReady(worker) {
            supervisor.readinessEvent(worker, .notified)
        }
    }

    // MARK: - Requests, as the control server hands them over

    /// `baton deploy --release PATH [...]`.
    @discardableResult
    func deploy(_ release: String, wait: Bool = false, timeout: String? = nil, strategy: String? = nil) -> RecordingWaiter {
        let waiter = RecordingWaiter()
        supervisor.requestDeploy(
            kind: .deploy, options: DeployOptions(release: release, strategy: strategy, timeout: timeout, wait: wait), waiter: waiter, uid: 0)
        awaitReads()
        return waiter
    }

    /// `baton rollback`.
    @discardableResult
    func rollback(wait: Bool = false) -> RecordingWaiter {
        let waiter = RecordingWaiter()
        supervisor.requestDeploy(kind: .rollback, options: DeployOptions(wait: wait), waiter: waiter, uid: 0)
        awaitReads()
        return waiter
    }

    /// `baton reload` (SIGHUP has no waiter).
    @discardableResult
    func reload() -> RecordingWaiter {
        let waiter = RecordingWaiter()
        supervisor.requestReload(waiter: waiter, uid: 0)
        awaitReads()
        return waiter
    }

    /// The next reload reads the config baton runs with, changed by `change`; that config.
    @discardableResult
    func nextReloadReads(_ change: (inout BatonConfig) -> Void) -> BatonConfig {
        var config = supervisor.config
        change(&config)
        let changed = config
        supervisor.options.reloadConfig = { changed }
        return changed
    }

    /// `café` in NFC and in NFD, two release folders (two names on Linux), each deployed in
    /// turn to the end; each deploy must succeed.
    func deployNormalizationTwins() -> (nfc: String, nfd: String) {
        let twins = (nfc: makeRelease("caf\u{E9}"), nfd: makeRelease("cafe\u{301}"))
        for release in [twins.nfc, twins.nfd] {
            let client = deploy(release)
            finishOperations()
            #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
        }
        return twins
    }

    /// Every worker measured (PSS/USS) as an operation's start measures them, off the loop.
    func measure() {
        supervisor.measureThen("a test") {}
        settle()
    }

    /// `preflight`'s figures with every worker measured first, as `baton preflight` takes them.
    func preflight(release: String? = nil, need: UInt64 = 0, strategy: DeployStrategy? = nil) throws -> (PreflightVerdict, PreflightReport) {
        measure()
        return try supervisor.preflight(release: release, need: need, strategy: strategy)
    }

    // MARK: - What the test looks at

    /// The pid serving each slot (nil: none).
    var servingPIDs: [pid_t?] { supervisor.slots.map { $0.current?.pid } }

    /// The release each slot's serving worker runs (nil: none).
    var servingReleases: [String?] { supervisor.slots.map { $0.current?.spec.release } }

    /// Whether every slot has a ready worker.
    var allReady: Bool { supervisor.slots.allSatisfy { $0.current?.state == .ready } }
}

extension DaemonHarness {
    /// What the restart policy does when it orders a replacement (`Supervisor+Memory.swift`).
    func requestPolicyRestart(slot: Int, reason: RestartReason) {
        supervisor.submitPolicyRestart(slot: slot, reason: reason, log: "test: policy restart of slot \(slot)")
        awaitReads()
    }
}
