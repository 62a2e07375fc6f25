/// What `baton status` shows, and `status --json` prints.
public struct StatusReport: Codable, Sendable, Equatable {
    /// App name.
    public var app: String
    /// baton's own pid.
    public var pid: Int32
    /// starting | running | reloading | stopping.
    public var state: String
    /// The current release (the directory new workers start in).
    public var release: String
    /// Where workers accept.
    public var listeners: [String]
    /// Slots configured.
    public var slots: Int
    /// One-line summary (also baton's STATUS= to systemd).
    public var summary: String
    /// Workers, by slot, including ones starting or draining.
    public var workers: [WorkerStatus]
    /// The deploy, reload or rollback in progress, if any.
    public var operation: OperationStatus?
    /// What waits while no operation runs (behind the start-up), as
    /// ``OperationStatus/queuedOperations`` names it (nil: nothing, or an operation runs and
    /// names its queue). An operator audit: a deploy or SIGHUP queued during start-up was
    /// not shown anywhere.
    public var queuedOperations: [String]?
    /// Set when a rollback failed: some slots may run another release.
    public var degraded: Bool?
    /// Problems of the state directory (unwritable, release.json unreadable, the persisted
    /// release missing), one line each; nil when there are none.
    public var problems: [String]?
    /// The memory budget and what the threshold policy compares with it.
    public var memory: MemoryStatus?
    /// Bytes of baton's own log dropped since it started because stderr did not
    /// keep up (the log is never allowed to block the daemon).
    public var logDroppedBytes: UInt64?
    /// Kernel OOM kills seen in baton's memory cgroup; nil when it has no OOM counter.
    public var oom: OOMStatus?
    /// The memory reservation `preflight --roll-ahead` holds, if any.
    public var reservation: ReservationReport?
    /// `memory.mergeable`: set only when it is on (the KSM column shows then).
    public var ksm: KSMStatus?
    /// The molds (mold mode): the current release's, and a deploy's new one; nil in exec mode.
    public var molds: [MoldStatus]?
    /// Processes baton adopted that are no worker: they left their worker's process group
    /// and their parent exited (a daemonizing worker). They run on, maybe holding the
    /// listening sockets, until baton stops and kills them; nil when there are none.
    public var strays: [Int32]?
    /// The strays' PSS, their trees summed, as this status read it (nil when not read): no
    /// memory rule counts it, and a worker's restart frees none of it.
    public var straysPSSBytes: UInt64?
    /// Set when this report's memory figures are each worker's last sample, not a read made
    /// for it (that read did not finish in time): why, in words.
    public var memoryNote: String?
    /// Sections the config changed at the last reload that only a restart of baton applies
    /// (`[listen]`, `[control]` …); nil when none waits.
    public var restartNeeded: [String]?

    enum CodingKeys: String, CodingKey {
        case app, pid, state, release, listeners, slots, summary, workers, operation, queuedOperations, degraded, problems, memory, oom
        case reservation, ksm
        case molds, strays
        case straysPSSBytes = "strays_pss_bytes"
        case logDroppedBytes = "log_dropped_bytes"
        case memoryNote = "memory_note"
        case restartNeeded = "restart_needed"
    }

    /// Creates a report.
    public init(app: String, pid: Int32, state: String, release: String, listeners: [String], slots: Int, summary: String, workers: [WorkerStatus]) {
        self.app = app
        self.pid = pid
        self.state = state
        self.release = release
        self.listeners = listeners
        self.slots = slots
        self.summary = summary
        self.workers = workers
    }
}

/// The memory line of `baton status`: the budget, the workers' total against the policy's
/// threshold, and what each worker's MEM bar is measured against.
public struct MemoryStatus: Codable, Sendable, Equatable {
    /// The effective budget in bytes.
    public var budgetBytes: UInt64
    /// Where it comes from: configured | cgroup | mem_total.
    public var budgetSource: String
    /// `memory.threshold` as a fraction of the budget.
    public var threshold: Double
    /// The workers' summed PSS (shared pages counted once).
    public var workersPSSBytes: UInt64
    /// The cgroup's working set, when the budget is the cgroup's limit: the threshold rule
    /// measures the higher of it and the workers' PSS (other processes of the cgroup count).
    public var cgroupWorkingSetBytes: UInt64?
    /// Live workers whose PSS could not be read, left out of `workersPSSBytes` (nil: none). An
    /// audit saw "workers' PSS 0 B = 0%" for workers of 164 MiB whose trees could not be
    /// measured (a zombie in each, since counted as 0).
    public var workersUnmeasured: Int?
    /// Set while the total is over the threshold by more than the workers' growth since ready,
    /// so no restart could bring it under and none is ordered for it (the words say why).
    public var thresholdHeld: String?

    enum CodingKeys: String, CodingKey {
        case threshold
        case thresholdHeld = "threshold_held"
        case budgetBytes = "budget_bytes"
        case budgetSource = "budget_source"
        case workersPSSBytes = "workers_pss_bytes"
        case cgroupWorkingSetBytes = "cgroup_working_set_bytes"
        case workersUnmeasured = "workers_unmeasured"
    }

    /// Creates the memory line.
    public init(budgetBytes: UInt64, budgetSource: String, threshold: Double, workersPSSBytes: UInt64, cgroupWorkingSetBytes: UInt64? = nil) {
        self.budgetBytes = budgetBytes
        self.budgetSource = budgetSource
        self.threshold = threshold
        self.workersPSSBytes = workersPSSBytes
        self.cgroupWorkingSetBytes = cgroupWorkingSetBytes
    }

    /// `bytes` as a whole percentage of the budget.
    func percent(_ bytes: UInt64) -> Int { budgetBytes > 0 ? Int((Double(bytes) / Double(budgetBytes) * 100).rounded()) : 0 }

    /// One worker's share of the threshold: what a MEM bar is measured against when there is
    /// no `memory.worker_limit`.
    public func share(workers: Int) -> UInt64 {
        guard workers > 0 else { return 0 }
        return UInt64(Double(budgetBytes) * threshold / Double(workers))
    }
}

/// KSM with `memory.mergeable` on: whether the host's ksmd runs, and why nothing merges when
/// it cannot.
public struct KSMStatus: Codable, Sendable, Equatable {
    /// The content of /sys/kernel/mm/ksm/run ("0" off, "1" on, "2" unmerging); nil when the
    /// kernel has no KSM.
    public var run: String?
    /// Why workers are not merged (ksmd off, a kernel without PR_SET_MEMORY_MERGE), one line
    /// each; empty when merging works.
    public var notes: [String]

    /// Creates the KSM line.
    public init(run: String?, notes: [String]) {
        self.run = run
        self.notes = notes
    }
}

/// A deploy, reload or rollback in progress.
public struct OperationStatus: Codable, Sendable, Equatable {
    /// deploy | reload | rollback.
    public var kind: String
    /// rolling-out | rolling-back.
    public var phase: String
    /// The release being rolled out.
    public var release: String
    /// Seconds since it started.
    public var elapsed: Double
    /// Progress lines so far.
    public var progress: [String]
    /// Operations queued behind it.
    public var queued: Int
    /// What each queued one is, in order: `deploy of DIR`, `rollback`, `reload` (nil: none,
    /// or a baton before it was reported). A systemd/CI audit found `1 queued` and no way to
    /// see that it was a deploy of a release whose CI job had been cancelled.
    public var queuedOperations: [String]?

    /// Creates a status.
    public init(kind: String, phase: String, release: String, elapsed: Double, progress: [String], queued: Int) {
        self.kind = kind
        self.phase = phase
        self.release = release
        self.elapsed = elapsed
        self.progress = progress
        self.queued = queued
    }
}

/// One worker (or an empty slot waiting for a respawn) in a status report.
public struct WorkerStatus: Codable, Sendable, Equatable {
    /// Slot 0..N-1.
    public var slot: Int
    /// Process id (0 while the slot has no worker: waiting to respawn, not started).
    public var pid: Int32 {
        get { encodedPID ?? 0 }
        set { encodedPID = newValue == 0 ? nil : newValue }
    }
    /// What `--json` carries: no `pid` for a slot without a worker (a metrics audit: `"pid": 0`,
    /// which `kill` takes for the caller's own process group).
    private var encodedPID: Int32?
    /// starting | ready | draining | exited.
    public var state: String
    /// Release (working directory) it runs.
    public var release: String
    /// Generation of the slot (increments with each start).
    public var generation: Int
    /// Start time, seconds since the Unix epoch.
    public var startedAt: Double?
    /// Seconds from start to ready.
    public var readyAfter: Double?
    /// Memory over the worker's process tree, bytes.
    public var rssBytes: UInt64?
    /// See `rssBytes`.
    public var pssBytes: UInt64?
    /// See `rssBytes`; the private part a restart frees (Private_Dirty: clean private pages are
    /// file cache, which stays).
    public var ussBytes: UInt64?
    /// See `rssBytes`; the shared resident part (Shared_Clean + Shared_Dirty).
    public var sharedBytes: UInt64?
    /// Its USS when it became ready (or its tree settled, or its lowest since): the memory
    /// rules measure its growth from here.
    public var ussAtReadyBytes: UInt64?
    /// KSM: bytes merging saves for this worker's tree (`ksm_process_profit`, may be < 0);
    /// nil unless `memory.mergeable` is on.
    public var ksmProfitBytes: Int64?
    /// KSM: the tree's pages merged with an identical one (`ksm_merging_pages`).
    public var ksmMergingPages: UInt64?
    /// Restarts of this slot since baton started.
    public var restarts: Int
    /// Why the slot last restarted (encoded as its text: crash, reload, readiness-timeout, a failed
    /// start's words, ...).
    public var lastRestartReason: RestartCause?
    /// Consecutive failed starts.
    public var consecutiveFailures: Int
    /// True when the slot keeps failing.
    public var crashLoop: Bool
    /// Seconds until the next start attempt, while waiting out a backoff.
    public var nextStartIn: Double?
    /// The worker's last STATUS= text.
    public var statusText: String?
    /// USS growth rate from a robust fit over its samples, MiB per hour.
    public var leakMiBPerHour: Double?
    /// Predicted seconds until its USS reaches `memory.worker_limit`.
    public var secondsToLimit: Double?
    /// `memory.worker_limit`, for the bar.
    public var limitBytes: UInt64?
    /// Requests the worker reported serving (`X_BATON_REQUESTS=`); nil when it never did.
    public var requests: Int?
    /// Its `max_requests` limit (jitter included); nil when recycling by count is off.
    public var requestLimit: Int?

    enum CodingKeys: String, CodingKey {
        case slot
        case encodedPID = "pid"
        case state, release, generation, restarts
        case startedAt = "started_at"
        case readyAfter = "ready_after"
        case rssBytes = "rss_bytes"
        case pssBytes = "pss_bytes"
        case ussBytes = "uss_bytes"
        case sharedBytes = "shared_bytes"
        case ussAtReadyBytes = "uss_at_ready_bytes"
        case ksmProfitBytes = "ksm_profit_bytes"
        case ksmMergingPages = "ksm_merging_pages"
        case lastRestartReason = "last_restart_reason"
        case requests
        case requestLimit = "request_limit"
        case consecutiveFailures = "consecutive_failures"
        case crashLoop = "crash_loop"
        case nextStartIn = "next_start_in"
        case statusText = "status_text"
        case leakMiBPerHour = "leak_mib_per_hour"
        case secondsToLimit = "seconds_to_limit"
        case limitBytes = "limit_bytes"
    }

    /// Creates a row.
    public init(
        slot: Int, pid: Int32, state: String, release: String, generation: Int, startedAt: Double? = nil,
        readyAfter: Double? = nil, rssBytes: UInt64? = nil, pssBytes: UInt64? = nil, ussBytes: UInt64? = nil,
        restarts: Int = 0, lastRestartReason: RestartCause? = nil, consecutiveFailures: Int = 0, crashLoop: Bool = false,
        nextStartIn: Double? = nil, statusText: String? = nil, leakMiBPerHour: Double? = nil, secondsToLimit: Double? = nil,
        limitBytes: UInt64? = nil
    ) {
        self.leakMiBPerHour = leakMiBPerHour
        self.secondsToLimit = secondsToLimit
        self.limitBytes = limitBytes
        self.slot = slot
        self.encodedPID = pid == 0 ? nil : pid
        self.state = state
        self.release = release
        self.generation = generation
        self.startedAt = startedAt
        self.readyAfter = readyAfter
        self.rssBytes = rssBytes
        self.pssBytes = pssBytes
        self.ussBytes = ussBytes
        self.restarts = restarts
        self.lastRestartReason = lastRestartReason
        self.consecutiveFailures = consecutiveFailures
        self.crashLoop = crashLoop
        self.nextStartIn = nextStartIn
        self.statusText = statusText
    }
}

extension StatusReport {
    /// The human table of `baton status`.
    public func table(now: Double) -> String {
        var lines = ["\(app): \(summary)", "release: \(release)", "listening: \(listeners.joined(separator: ", "))"]
        if let op = operation {
            lines.append("in progress: \(op.kind) of \(op.release), \(op.phase), \(Self.age(op.elapsed))" + (op.queued > 0 ? ", \(op.queued) queued" : ""))
            if let last = op.progress.last { lines.append("  last step: \(last)") }
            for queued in op.queuedOperations ?? [] { lines.append("  queued: \(queued)") }
        } else if let waiting = queuedOperations, !waiting.isEmpty {
            lines.append("waiting for the start-up: \(waiting.count) queued")
            for queued in waiting { lines.append("  queued: \(queued)") }
        }
        if degraded == true { lines.append("DEGRADED: a rollback failed; slots may run different releases (see RELEASE below)") }
        for problem in problems ?? [] { lines.append("ERROR: \(problem)") }
        if let restartNeeded, !restartNeeded.isEmpty {
            lines.append("restart needed: \(restartNeeded.joined(separator: ", ")) changed at the last reload (a reload cannot apply them)")
        }
        if let strays, !strays.isEmpty {
            lines.append(
                "strays: pid \(strays.map(String.init).joined(separator: ", "))\(straysPSSBytes.map { ", PSS \(Units.formatSize($0)), in no memory figure below" } ?? "") (left their workers' process groups; not supervised, killed when baton stops)"
            )
        }
        if let m = memory {
            let percent = Int((m.threshold * 100).rounded())
            // The cgroup's figure when the threshold rule may act on it (a memory-pressure audit: the
            // line showed 45 % while the cgroup stood at 97 % and the policy restarted a worker).
            let cgroup = m.cgroupWorkingSetBytes.map { "; cgroup working set \(Units.formatSize($0)) = \(m.percent($0))%" } ?? ""
            let unmeasured = m.workersUnmeasured.map { " (\($0) worker\($0 == 1 ? "" : "s") not measured: left out)" } ?? ""
            lines.append(
                "memory: workers' PSS \(Units.formatSize(m.workersPSSBytes))\(unmeasured) = \(m.percent(m.workersPSSBytes))% of the \(Units.formatSize(m.budgetBytes)) budget (\(m.budgetSource))\(cgroup); restart threshold \(percent)%"
            )
            if let held = m.thresholdHeld { lines.append("memory: no restart for the threshold: \(held)") }
        }
        if let oom, oom.kills > 0 { lines.append(oom.line(now: now)) }
        if let r = reservation { lines.append(r.line) }
        if let memoryNote { lines.append("note: \(memoryNote)") }
        for note in ksm?.notes ?? [] { lines.append("note: \(note)") }
        for mold in molds ?? [] { lines.append(mold.line(now: now)) }
        if let dropped = logDroppedBytes, dropped > 0 {
            lines.append("log: \(dropped) bytes of baton's log dropped (stderr did not keep up, or refused them: a closed pipe, a full disk)")
        }
        lines.append("")
        // USS is the private part, SHARED what other processes map too; KSM only with memory.mergeable.
        var header = ["SLOT", "PID", "STATE", "AGE", "RSS", "PSS", "USS", "SHARED", "MEM", "LEAK/h", "RESTARTS", "LAST REASON", "RELEASE"]
        let ksmColumn = ksm != nil
        if ksmColumn { header.insert("KSM", at: 8) }
        // MEM: USS against the worker limit, else against the worker's share of the threshold.
        let scale = workers.compactMap { $0.limitBytes }.max() ?? memory?.share(workers: slots) ?? 0
        var rows: [[String]] = [header]
        for w in workers {
            let age = w.startedAt.map { Self.age(now - $0) } ?? "-"
            var state = w.state
            if w.crashLoop { state += " (crash-loop)" }
            if let next = w.nextStartIn { state += " (retry in \(Self.age(next)))" }
            var row = [
                String(w.slot), w.pid == 0 ? "-" : String(w.pid), state, age, Self.mib(w.rssBytes), Self.mib(w.pssBytes),
                Self.mib(w.ussBytes), Self.mib(w.sharedBytes), Self.bar(w.ussBytes, of: scale),
                w.leakMiBPerHour.map { Self.leak($0, w.secondsToLimit) } ?? "-", String(w.restarts), w.lastRestartReason?.text ?? "-", w.release,
            ]
            if ksmColumn { row.insert(Self.signedMiB(w.ksmProfitBytes), at: 8) }
            rows.append(row)
        }
        lines += TextColumns.lines(rows)
        return lines.joined(separator: "\n")
    }

    /// `[####------]`: USS against the worker limit (or the worker's share of the threshold);
    /// `[##########]+` past it.
    static func bar(_ bytes: UInt64?, of scale: UInt64) -> String {
        guard let bytes, scale > 0 else { return "-" }
        let ratio = Double(bytes) / Double(scale)
        let filled = min(10, Int((ratio * 10).rounded()))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: 10 - filled) + "]" + (ratio > 1 ? "+" : "")
    }

    /// "+12.3M" (and "→limit 2h5m" when a limit will be reached).
    static func leak(_ mibPerHour: Double, _ toLimit: Double?) -> String {
        let tenths = Int((mibPerHour * 10).rounded())
        let text = (tenths >= 0 ? "+" : "-") + "\(abs(tenths) / 10).\(abs(tenths) % 10)M"
        return toLimit.map { text + " (limit in \(age($0)))" } ?? text
    }

    static func mib(_ bytes: UInt64?) -> String {
        guard let bytes else { return "-" }
        let tenths = (bytes * 10 + 512 * 1024) / (1024 * 1024)
        return "\(tenths / 10).\(tenths % 10)M"
    }

    /// A KSM profit: "12.3M", "-0.1M" (the rmap items may cost more than merging saves).
    static func signedMiB(_ bytes: Int64?) -> String {
        guard let bytes else { return "-" }
        return (bytes < 0 ? "-" : "") + mib(bytes.magnitude)
    }

    static func age(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }
}
