import BatonCore

/// What one `baton status` reports: values copied from the supervisor on the loop once the
/// workers' trees were measured, so the control server renders a value (``report()``) and
/// never reads the supervisor's slots, workers or counters itself (as the metrics server
/// renders a ``MetricsSnapshot``).
struct StatusSnapshot: Sendable, Equatable {
    /// One worker of a slot (serving, starting or draining).
    struct Worker: Sendable, Equatable {
        /// Its pid.
        var pid: Int32
        /// starting, ready, draining or exited.
        var state: String
        /// The release folder it runs.
        var release: String
        /// Its start's number in the slot.
        var generation: Int
        /// When it was started, seconds since the epoch.
        var startedAtWall: Double
        /// Seconds from start to ready, once ready.
        var readyAfter: Double?
        /// Its tree measured for this status (nil: gone meanwhile, or unreadable).
        var memory: MemorySample?
        /// The last STATUS= it sent.
        var statusText: String?
        /// Requests it reported serving (`X_BATON_REQUESTS=`).
        var requests: Int?
        /// Its request limit, when `[rolling] max_requests` is set.
        var requestLimit: Int?
        /// Its fitted USS growth, MiB per hour, once there is one.
        var leakMiBPerHour: Double?
        /// Seconds until that growth reaches `worker_limit`, when both are known.
        var secondsToLimit: Double?
    }

    /// One slot and its workers.
    struct Slot: Sendable, Equatable {
        /// Slot 0..N-1.
        var index: Int
        /// The release its next worker runs.
        var release: String
        /// Its latest start's number.
        var generation: Int
        /// Restarts so far.
        var restarts: Int
        /// Why it restarted last.
        var lastRestartReason: RestartCause?
        /// Failed starts in a row.
        var consecutiveFailures: Int
        /// Whether it is in a crash loop.
        var crashLoop: Bool
        /// Seconds until its next start, while one waits.
        var nextStartIn: Double?
        /// Its live workers (none: the slot shows one "exited" row).
        var workers: [Worker]
    }

    /// A mold (mold mode).
    struct Mold: Sendable, Equatable {
        /// Its pid.
        var pid: Int32
        /// The release it preloaded.
        var release: String
        /// Its state.
        var state: String
        /// When it was started, seconds since the epoch.
        var startedAtWall: Double
        /// Its PSS, measured for this status.
        var pssBytes: UInt64?
    }

    /// The memory budget in force, when the host's figures were readable.
    struct Budget: Sendable, Equatable {
        /// Bytes.
        var bytes: UInt64
        /// configured, or where an auto budget came from.
        var source: String
        /// `[memory] threshold`.
        var threshold: Double
    }

    /// `[app] name`.
    var app: String
    /// baton's pid.
    var pid: Int32
    /// The supervisor's phase.
    var state: String
    /// The current release.
    var release: String
    /// The listening addresses.
    var listeners: [String]
    /// The one-line summary.
    var summary: String
    /// Every slot, by index.
    var slots: [Slot]
    /// `[memory] worker_limit`, shown with each worker.
    var workerLimit: UInt64?
    /// Whether `memory.mergeable` is on (the KSM columns are shown).
    var mergeable: Bool
    /// The operation running, if any.
    var operation: OperationStatus?
    /// Set when a rollback failed.
    var degraded: Bool
    /// Bytes of baton's own log dropped since it started.
    var logDroppedBytes: UInt64
    /// Problems of the state directory.
    var problems: [String]
    /// OOM kills, when the counter is watched.
    var oom: OOMStatus?
    /// The reservation held, if any.
    var reservation: ReservationReport?
    /// `memory.mergeable`'s state, when on.
    var ksm: KSMStatus?
    /// The molds (nil in exec mode).
    var molds: [Mold]?
    /// Molds started again since baton started.
    var moldRestarts: Int
    /// The memory budget, when the host's figures were readable.
    var budget: Budget?

    /// The reply's report (its wire form is ``StatusReport``'s).
    func report() -> StatusReport {
        var rows: [WorkerStatus] = []
        for slot in slots {
            if slot.workers.isEmpty {
                rows.append(
                    WorkerStatus(
                        slot: slot.index, pid: 0, state: "exited", release: slot.release, generation: slot.generation,
                        restarts: slot.restarts, lastRestartReason: slot.lastRestartReason,
                        consecutiveFailures: slot.consecutiveFailures, crashLoop: slot.crashLoop, nextStartIn: slot.nextStartIn))
                continue
            }
            for worker in slot.workers {
                let memory = worker.memory
                var row = WorkerStatus(
                    slot: slot.index, pid: worker.pid, state: worker.state, release: worker.release,
                    generation: worker.generation, startedAt: worker.startedAtWall, readyAfter: worker.readyAfter, rssBytes: memory?.rss,
                    pssBytes: memory?.pss, ussBytes: memory?.uss, restarts: slot.restarts,
                    lastRestartReason: slot.lastRestartReason, consecutiveFailures: slot.consecutiveFailures,
                    crashLoop: slot.crashLoop, statusText: worker.statusText, leakMiBPerHour: worker.leakMiBPerHour,
                    secondsToLimit: worker.secondsToLimit, limitBytes: workerLimit)
                row.sharedBytes = memory?.shared
                if mergeable {
                    row.ksmProfitBytes = memory?.ksm?.profit
                    row.ksmMergingPages = memory?.ksm?.mergingPages
                }
                row.requests = worker.requests
                row.requestLimit = worker.requestLimit
                rows.append(row)
            }
        }
        var report = StatusReport(
            app: app, pid: pid, state: state, release: release, listeners: listeners, slots: slots.count, summary: summary, workers: rows)
        report.operation = operation
        report.degraded = degraded ? true : nil
        report.logDroppedBytes = logDroppedBytes
        report.problems = problems.isEmpty ? nil : problems
        report.oom = oom
        report.reservation = reservation
        report.ksm = ksm
        report.molds = molds?.map {
            MoldStatus(pid: $0.pid, release: $0.release, state: $0.state, startedAt: $0.startedAtWall, pssBytes: $0.pssBytes, restarts: moldRestarts)
        }
        if let budget {
            report.memory = MemoryStatus(
                budgetBytes: budget.bytes, budgetSource: budget.source, threshold: budget.threshold,
                workersPSSBytes: rows.compactMap(\.pssBytes).reduce(0, +))
        }
        return report
    }
}
