import BatonCore
import BatonSystem
import Glibc

/// A mold's channel as the supervisor uses it: one bounded spawn round trip. `MoldChannel`
/// (BatonSystem) is the real one; the tests of BatonDaemon play a mold with a fake.
protocol MoldLink: AnyObject {
    /// Asks the mold for a worker; waits at most `timeout` for the reply.
    func spawn(_ request: SpawnRequest, timeout: Duration) throws(MoldError) -> ChildProcess
}

extension MoldChannel: MoldLink {}

/// One mold process (mold mode): it loaded a release's app once and forks that release's
/// workers on request (docs/MOLD.md); its descriptors, output and timers are
/// ``ChildChannels``'. Lives on the event-loop thread only.
final class Mold: ChildChannels {
    /// starting → ready → stopping → exited.
    enum State: String {
        case starting, ready, stopping, exited
    }

    /// What it runs: its release, argv and environment (the spec its workers run too).
    let spec: WorkerSpec
    /// baton's end of its channel (nil once closed: the mold exits on end of file).
    var link: (any MoldLink)?
    /// Current state.
    var state: State = .starting
    /// Monotonic start time.
    let startedAt: Duration
    /// Wall-clock start time (seconds since the epoch), for status.
    let startedAtWall: Double
    /// Monotonic time it became ready.
    var readyAt: Duration?
    /// Set when baton killed it for failing: a new one starts once it is reaped.
    var replaceOnExit = false
    /// How much nicer than baton it boots (`[readiness] boot_nice`; 0 once given back: at
    /// ready, or at half its `start_timeout`).
    var bootNice: Int32 = 0

    init(spec: WorkerSpec, process: ChildProcess, link: any MoldLink, startedAt: Duration) {
        self.spec = spec
        self.link = link
        self.startedAt = startedAt
        self.startedAtWall = wallClockNow()
        super.init(process: process)
    }
}

/// A worker start waiting for its release's mold to be ready.
struct MoldWaiter {
    /// The slot.
    var slot: Int
    /// Its place in the slot.
    var role: Supervisor.Role
    /// Why it starts (a restart's cause).
    var reason: RestartCause?
    /// The spec (release) whose mold it waits for.
    var spec: WorkerSpec
}

/// Everything the supervisor keeps about molds.
final class MoldBook {
    /// Live molds (at most one per spec), oldest first.
    var molds: [Mold] = []
    /// Worker starts waiting for a mold.
    var waiters: [MoldWaiter] = []
    /// The first actions of a rollout (by operation number) waiting for its release's mold.
    var pendingRollout: (operation: Int, actions: [RollingRestart.Action])?
    /// Crash backoff of the molds of each release (a mold that dies after it was ready is
    /// restarted after this delay).
    var backoff: [PathKey: CrashBackoff] = [:]
    /// Pending restarts of dead molds, by release.
    var restartTimers: [PathKey: EventLoop.Token] = [:]
    /// Molds that died unexpectedly and were restarted, per release: what `baton status` shows
    /// for that release's mold (a mold audit saw the serving release's mold with the restart of
    /// a failed deploy's). Entries are never removed.
    var restartsByRelease: [PathKey: Int] = [:]
    /// All of them (a Prometheus counter).
    var restarts: Int { restartsByRelease.values.reduce(0, +) }
    /// Releases whose mold restart waits for memory (said once in the log).
    var heldRestarts: Set<PathKey> = []
    /// Molds started so far (names their notify sockets).
    var started = 0
    /// Refork: baton's end of each promotable worker's channel, by pid.
    var promotable: [pid_t: MoldChannel] = [:]
    /// Refork: releases whose mold was already promoted from a worker (once per release).
    var reforked: Set<PathKey> = []
    /// Refork: the worker being promoted now.
    var promoting: Promotion?
    /// Refork: the next check.
    var reforkTimer: EventLoop.Token?
    /// Each mold's last memory sample (by pid), taken with the workers'.
    var memory: [pid_t: MemorySample] = [:]
    /// The RSS of the largest ready mold last measured: what a new mold is planned with while
    /// none is ready (one killed and crash-looping: a mold audit's preflight said "fits" with
    /// no mold counted, and every new mold was OOM-killed as it loaded).
    var lastReadyRSS: UInt64?
    /// The output pipes (inodes) of spawns a mold failed, with until when they are looked for,
    /// newest last (at most 16): a worker the mold forked for one of them anyway is baton's
    /// child, and nobody's worker.
    var abandonedOutputs: [(pipe: UInt64, until: Duration)] = []
    /// The next look for them while any is kept.
    var abandonedTimer: EventLoop.Token?

    /// The live mold for `spec`, if any.
    func mold(for spec: WorkerSpec) -> Mold? {
        molds.last { $0.spec == spec && ($0.state == .starting || $0.state == .ready) }
    }
}
