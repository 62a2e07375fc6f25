import BatonCore
import BatonSystem
import Glibc

extension Supervisor {
    /// `baton status`: every worker's process tree measured now (PSS/USS from
    /// smaps_rollup) on a thread of its own, then `reply` with the report, built on the loop
    /// from the supervisor's state and those figures. A status of hundreds of large workers
    /// walks their page tables without holding the loop, and the control server renders an
    /// immutable value, never the supervisor's slots, workers or counters.
    ///
    /// A read not done within ``statusReadWait`` is not waited for: the report takes each
    /// worker's last sample and says so (a soak audit: reads of smaps_rollup stuck in
    /// uninterruptible sleep while the host stalled held status for 21 s, and the CLI gave up,
    /// exit 4, as if baton hung).
    func requestStatus(_ reply: @escaping (StatusReport) -> Void) {
        // The strays too: no rule counts their memory, but the operator should see it (an apps
        // audit: helpers that left their workers' groups held 2.4 GiB while status said the
        // workers' PSS was 77 MiB, and nothing said more).
        let pids = measuredPIDs + escapedChildren()
        let ksm = config.memory.mergeable
        let onTime = boundedWait(Self.statusReadWait) { [unowned self] in
            var report = self.statusReport(memory: self.lastMemorySamples)
            report.memoryNote =
                "memory figures from the last check: this status's read of the workers' memory did not finish within \(Units.formatDuration(Self.statusReadWait)) (the host is stalled, or a process is in uninterruptible sleep)"
            reply(report)
        }
        loop.offload({ [reader = host.memory] in MemoryMonitor.read(pids, detailed: true, ksm: ksm, with: reader) }) { [unowned self] readings in
            onTime { reply(self.statusReport(memory: readings)) }
        }
    }

    /// How long `baton status` waits for its read of the workers' memory.
    static let statusReadWait: Duration = .seconds(2)

    /// Each live worker's and mold's last memory sample, by pid.
    var lastMemorySamples: [pid_t: MemorySample] {
        var samples = moldBook.memory.merging(takeOver.memory) { a, _ in a }
        for slot in slots { for w in slot.workers { if let m = w.memory { samples[w.pid] = m } } }
        return samples
    }

    /// Listening sockets that accept no connection any more: a process holding one called
    /// shutdown(2) on it, which disconnects it for every holder (an audit: a worker's
    /// `shutdown(SHUT_RD)` on its inherited socket refused every new connection while status
    /// said 3/3 ready). baton cannot listen on it again at its address, which it no longer
    /// holds: only a new socket can (a restart of the socket unit, or of baton without one).
    var deadListeners: [String] { listeners.filter { Sockets.isListening($0.fd) == false }.map(\.address) }

    static func deadListenerProblem(_ address: String) -> String {
        "listening socket \(address) accepts no connections: a process holding it shut it down (shutdown(2)); restart the socket unit (or baton, without one)"
    }

    /// Under socket activation, how the config's `[listen]` (the last reload's) differs from
    /// the sockets baton has (a re-audit: the line said at start stayed after a reload put
    /// `[listen]` right).
    var listenMismatchNow: String? {
        socketsFromUnit ? Self.listenMismatch(configured: reloadedListen ?? config.listen.addresses, passed: listeners.map(\.address)) : nil
    }

    /// The status report now, with each worker's tree memory from `memory` (by pid).
    func statusReport(memory trees: [pid_t: MemorySample]) -> StatusReport {
        let now = loop.now()
        var report = StatusReport(
            app: config.app.name, pid: getpid(), state: phase.rawValue, release: releaseState.current.directory,
            listeners: listeners.map(\.address), slots: slots.count, summary: summary,
            workers: slots.flatMap { statusRows($0, memory: trees, now: now) } + orphanRows(memory: trees))
        // A queued operation has no target yet: a deploy names the release it asked for.
        let queued = queue.map { q in q.kind == .deploy ? "deploy of \(q.options?.release ?? "?")" : q.kind.rawValue }
        report.operation = operation.map { op in
            var status = OperationStatus(
                kind: op.kind.rawValue, phase: op.phase.rawValue, release: op.target?.directory ?? "?",
                elapsed: Self.seconds(now - op.startedAt), progress: Array(op.progress.suffix(20)), queued: queue.count)
            status.queuedOperations = queued.isEmpty ? nil : queued
            return status
        }
        if operation == nil, !queued.isEmpty { report.queuedOperations = queued }
        report.degraded = degraded ? true : nil
        let strays = escapedChildren().sorted()
        report.strays = strays.isEmpty ? nil : strays
        let straysPSS = strays.compactMap { trees[$0]?.pss }
        report.straysPSSBytes = straysPSS.isEmpty ? nil : straysPSS.reduce(0, +)
        report.logDroppedBytes = LogWriter.standardError.droppedBytes
        let problems =
            stateProblems + deadListeners.map(Self.deadListenerProblem) + (runtimeTrouble.map { [$0] } ?? []) + (takeOver.runtimeLockTrouble.map { [$0] } ?? [])
            + (memoryMonitor.hostMemoryProblem.map { [$0] } ?? []) + unacceptedListeners.values.sorted()
            + lostUnixListeners.values.sorted() + (listenMismatchNow.map { [$0] } ?? [])
        report.problems = problems.isEmpty ? nil : problems
        report.restartNeeded = restartNeeded.isEmpty ? nil : restartNeeded
        report.oom = oomStatus()
        report.reservation = reservationReport()
        report.ksm = ksmStatus()
        if moldMode {
            report.molds = moldBook.molds.map {
                MoldStatus(
                    pid: $0.pid, release: $0.spec.release, state: $0.state.rawValue, startedAt: wallTime(of: $0.startedAt), pssBytes: trees[$0.pid]?.pss,
                    restarts: moldBook.restartsByRelease[$0.spec.releaseKey] ?? 0)
            }
        }
        if let readings = try? host.memory.hostReadings() {
            let budget = EffectiveBudget.resolve(config.memory.budget, readings: readings)
            report.memory = MemoryStatus(
                budgetBytes: budget.bytes, budgetSource: budget.source.rawValue, threshold: config.memory.threshold,
                workersPSSBytes: report.workers.compactMap(\.pssBytes).reduce(0, +),
                cgroupWorkingSetBytes: budget.source == .cgroup ? readings.cgroup?.workingSet : nil)
            let unmeasured = report.workers.filter { $0.pid > 0 && $0.pssBytes == nil }.count
            report.memory?.workersUnmeasured = unmeasured > 0 ? unmeasured : nil
            report.memory?.thresholdHeld = memoryMonitor.policy.heldOverTheLine
        }
        return report
    }

    /// A slot's rows: one per live worker, or one "exited" row while it has none.
    private func statusRows(_ slot: Slot, memory trees: [pid_t: MemorySample], now: Duration) -> [WorkerStatus] {
        guard !slot.workers.isEmpty else {
            // A slot whose first worker has not started yet (start_concurrency, a mold not ready)
            // is not "exited" (an operator audit).
            return [
                WorkerStatus(
                    slot: slot.index, pid: 0, state: slot.generation == 0 ? "not-started" : "exited", release: slot.spec.release,
                    generation: slot.generation,
                    restarts: slot.restarts, lastRestartReason: slot.lastRestartReason,
                    consecutiveFailures: slot.backoff.consecutiveFailures, crashLoop: slot.isCrashLooping,
                    nextStartIn: slot.respawnAt.map { Self.seconds($0 - now) })
            ]
        }
        return slot.workers.map { worker in
            let memory = trees[worker.pid]
            let leak = worker.history.leakRate
            let toLimit = config.memory.workerLimit.flatMap { limit in leak?.timeToReach(limit, from: now) }
            var row = WorkerStatus(
                slot: slot.index, pid: worker.pid, state: worker.state.rawValue, release: worker.spec.release,
                generation: worker.generation, startedAt: wallTime(of: worker.startedAt),
                readyAfter: worker.bootTime.map { Self.seconds($0) }, rssBytes: memory?.rss, pssBytes: memory?.pss,
                ussBytes: memory?.uss, restarts: slot.restarts, lastRestartReason: slot.lastRestartReason,
                consecutiveFailures: slot.backoff.consecutiveFailures, crashLoop: slot.isCrashLooping,
                statusText: worker.statusText, leakMiBPerHour: leak?.mibPerHour, secondsToLimit: toLimit.map(Self.seconds),
                limitBytes: config.memory.workerLimit)
            row.sharedBytes = memory?.shared
            row.ussAtReadyBytes = worker.ussAtReady
            if config.memory.mergeable {
                row.ksmProfitBytes = memory?.ksm?.profit
                row.ksmMergingPages = memory?.ksm?.mergingPages
            }
            row.requests = worker.requestsServed
            row.requestLimit = requestRecycler.maxRequests > 0 ? requestRecycler.limit(pid: worker.pid) : nil
            return row
        }
    }

    /// The wall-clock time of `instant` (on the loop's monotonic clock): now on the wall clock
    /// minus the time since then on the monotonic one, so an age shown as now minus this is
    /// right whatever steps the wall clock took meanwhile (a time audit: after a step of +3
    /// days a worker 58 s old was shown `3d0h`, and in metrics two workers started 63 s apart
    /// were 6 days apart). As `ps` derives start times from the boot time.
    func wallTime(of instant: Duration) -> Double { wallClockNow() - Self.seconds(loop.now() - instant) }

    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return max(0, Double(s) + Double(atto) / 1e18)
    }
}
