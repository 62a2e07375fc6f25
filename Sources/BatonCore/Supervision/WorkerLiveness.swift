/// Whether each ready worker still answers for itself, as a pure state machine: the supervisor
/// feeds it what it knows of its ready workers (when they became ready, their last `WATCHDOG=1`,
/// the process states of their trees from /proc) with an explicit monotonic `now`, and replaces
/// the workers it names. Tests drive it with a fake clock.
///
/// Two checks:
/// - **watchdog** (`readiness.watchdog`, systemd's WatchdogSec semantics): a worker given
///   `WATCHDOG_USEC` must send `WATCHDOG=1` at least once per interval after it became ready.
///   Its deadline is the interval after the latest of: ready, its last ping, and the moment this
///   tracker started (after `baton upgrade` the new image has not seen the pings before it).
/// - **liveness** (`readiness.stopped_timeout`): a process of the worker's tree that stays
///   stopped (`T`, SIGSTOP/SIGTSTP) or stopped by a tracer (`t`) for longer than the timeout.
///   It needs nothing from the app. It cannot see a worker that runs but no longer serves (a
///   busy loop, a deadlock): that takes the watchdog.
///
/// Zombies are left out on purpose: an exited worker is the exit path's business (a crash),
/// and reporting it here too would mislabel the crash.
public struct WorkerLiveness: Sendable, Equatable {
    /// What each check needs from the config.
    public struct Settings: Sendable, Equatable {
        /// `readiness.stopped_timeout`; nil = no liveness check.
        public var stoppedTimeout: Duration?

        /// Creates settings.
        public init(stoppedTimeout: Duration?) {
            self.stoppedTimeout = stoppedTimeout
        }
    }

    /// What the supervisor knows of one ready worker.
    public struct Worker: Sendable, Equatable {
        /// The worker's pid (its process group leader).
        public var pid: Int32
        /// When it became ready (monotonic clock).
        public var readyAt: Duration
        /// The interval it was given in `WATCHDOG_USEC`; nil = no watchdog.
        public var watchdog: Duration?
        /// Its last `WATCHDOG=1` (monotonic clock), if any.
        public var lastPing: Duration?
        /// The state letters (`/proc/PID/stat` field 3) of the processes of its tree; empty when
        /// not read on this check.
        public var processStates: [Character]

        /// Creates a worker record.
        public init(pid: Int32, readyAt: Duration, watchdog: Duration? = nil, lastPing: Duration? = nil, processStates: [Character] = []) {
            self.pid = pid
            self.readyAt = readyAt
            self.watchdog = watchdog
            self.lastPing = lastPing
            self.processStates = processStates
        }
    }

    /// One worker to replace.
    public struct Verdict: Sendable, Equatable {
        /// The worker.
        public var pid: Int32
        /// Why: ``RestartReason/watchdog`` or ``RestartReason/liveness``; also its restart reason.
        public var reason: RestartReason
        /// One line for the log.
        public var detail: String
    }

    /// The settings.
    public var settings: Settings
    /// When this tracker started (monotonic clock): no watchdog deadline falls before it plus
    /// the interval.
    public let startedAt: Duration
    /// Since when each worker was seen stopped, by pid.
    public private(set) var stoppedSince: [Int32: Duration] = [:]
    /// The last check's time (nil before the first).
    public private(set) var lastCheck: Duration?
    /// Set by a check that came more than 1.5 watchdog intervals after the one before: how long
    /// baton itself did not run (stopped, or starved of CPU). Pings sent meanwhile may be lost
    /// (a worker that does not block drops them while its notify socket's queue is full), so
    /// every watchdog counts from that check (a re-audit: 5 of 7 stops of 15 to 31 s under
    /// load replaced healthy workers, and one rolled a good deploy back).
    public private(set) var stalled: Duration?
    /// Set by a check at which every worker with a watchdog (two or more) had missed it, or was
    /// due within a quarter interval, one at least late: the
    /// host, not each worker, likely stalled (a crash audit: a host stalled by other load,
    /// baton itself late by 4.49 s and 5.90 s, then all 4 workers replaced at once, about 4 s
    /// without one). Their watchdogs count from that check once more; missed again, they go.
    public private(set) var allMissed = false
    /// The grace of ``allMissed`` was given and no watchdog was kept since.
    private var allMissedGraceGiven = false
    /// No watchdog deadline falls before this plus the interval: the tracker's start, or the
    /// check that found baton stalled.
    private var deadlinesFrom: Duration

    /// A tracker started at `now`.
    public init(settings: Settings, now: Duration) {
        self.settings = settings
        self.startedAt = now
        deadlinesFrom = now
    }

    /// A process state that means the process is not running and will not by itself.
    public static func isStopped(_ state: Character) -> Bool { state == "T" || state == "t" }

    /// The moment `worker` misses its watchdog, nil without one.
    public func watchdogDeadline(_ worker: Worker) -> Duration? {
        guard let interval = worker.watchdog else { return nil }
        return max(worker.readyAt, worker.lastPing ?? worker.readyAt, deadlinesFrom) + interval
    }

    /// True when the liveness check wants the workers' process states on this check.
    public var wantsProcessStates: Bool { settings.stoppedTimeout != nil }

    /// One check of the ready workers at `now`; returns those to replace, at most one verdict each
    /// (the watchdog first). Workers not in `workers` are forgotten.
    public mutating func check(now: Duration, workers: [Worker]) -> [Verdict] {
        // Checks come at least once per interval (``nextCheck(now:workers:fallback:)``): a longer
        // gap is baton's own stall, not the workers'.
        stalled = nil
        if let last = lastCheck, let interval = workers.compactMap(\.watchdog).min(), now - last > interval * 3 / 2 {
            stalled = now - last
            deadlinesFrom = now
        }
        lastCheck = now
        // Late by now, or due within a quarter interval: deadlines a few milliseconds apart
        // (workers made ready one after another) fall on successive checks, and the first to
        // come due would go alone (a real SIGSTOP of 4 workers: slot 0 replaced, then the grace).
        // A worker that pings at half the interval, as `sd_watchdog_enabled()` users do, is due
        // half an interval later at the soonest.
        let due = workers.compactMap { w in watchdogDeadline(w).map { (deadline: $0, quarter: (w.watchdog ?? .zero) / 4) } }
        allMissed = false
        if due.count >= 2, due.allSatisfy({ now + $0.quarter >= $0.deadline }), due.contains(where: { now >= $0.deadline }) {
            if !allMissedGraceGiven {
                allMissedGraceGiven = true
                allMissed = true
                deadlinesFrom = now
            }
        } else {
            allMissedGraceGiven = false
        }
        let present = Set(workers.map(\.pid))
        stoppedSince = stoppedSince.filter { present.contains($0.key) }
        var verdicts: [Verdict] = []
        for worker in workers {
            if let deadline = watchdogDeadline(worker), now >= deadline, let interval = worker.watchdog {
                let last = worker.lastPing.map { "last WATCHDOG=1 \(Units.formatElapsed(now - $0)) ago" } ?? "no WATCHDOG=1 since ready"
                verdicts.append(
                    Verdict(pid: worker.pid, reason: .watchdog, detail: "missed its watchdog (\(Units.formatDuration(interval))): \(last)"))
                stoppedSince[worker.pid] = nil
                continue
            }
            guard let timeout = settings.stoppedTimeout, !worker.processStates.isEmpty else { continue }
            guard let state = worker.processStates.first(where: Self.isStopped) else {
                stoppedSince[worker.pid] = nil
                continue
            }
            let since = stoppedSince[worker.pid] ?? now
            stoppedSince[worker.pid] = since
            if now - since >= timeout {
                let what = state == "t" ? "stopped by a tracer" : "stopped"
                verdicts.append(
                    Verdict(
                        pid: worker.pid, reason: .liveness,
                        detail: "process \(what) (state \(state)) for \(Units.formatElapsed(now - since)), stopped_timeout \(Units.formatDuration(timeout))"))
                stoppedSince[worker.pid] = nil
            }
        }
        return verdicts
    }

    /// When to check next, after a check at `now`: the earliest watchdog deadline, and a
    /// quarter of `stopped_timeout` for the liveness check (a stopped worker goes between the
    /// timeout and 1.25 × it after it was first seen stopped). A worker that becomes ready later
    /// has its deadline at least `fallback` (the configured watchdog) after now, so without any
    /// deadline the next check is `fallback` from now. Never sooner than 10 ms from now.
    public func nextCheck(now: Duration, workers: [Worker], fallback: Duration?) -> Duration? {
        var next: Duration?
        func consider(_ t: Duration) { next = min(next ?? t, t) }
        for worker in workers {
            if let deadline = watchdogDeadline(worker) { consider(deadline) }
        }
        if let fallback { consider(now + fallback) }
        if let timeout = settings.stoppedTimeout { consider(now + timeout / 4) }
        return next.map { max($0, now + .milliseconds(10)) }
    }
}

/// The liveness probe's runs against one ready worker (`readiness.liveness_probe`): failed
/// runs in a row, and whether they are enough to replace it. One success starts over.
public struct LivenessProbeRecord: Sendable, Equatable {
    /// `readiness.liveness_failures`.
    public let threshold: Int
    /// Failed runs in a row.
    public private(set) var failures = 0

    /// A record that replaces the worker after `threshold` failures in a row.
    public init(threshold: Int) {
        self.threshold = max(1, threshold)
    }

    /// Records one run; true when the worker must be replaced now.
    public mutating func record(succeeded: Bool) -> Bool {
        failures = succeeded ? 0 : failures + 1
        return failures >= threshold
    }
}
