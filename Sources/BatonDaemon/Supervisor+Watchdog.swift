import BatonCore
import BatonSystem
import Glibc
import Logging

/// The worker watchdog (`readiness.watchdog`: WATCHDOG=1 at least once per interval after
/// READY, `WATCHDOG=trigger`) and the liveness check (`readiness.stopped_timeout`: a process
/// of the worker's tree stopped for too long). ``WorkerLiveness`` decides; here are the timer,
/// the /proc reads and the replacement.
extension Supervisor {
    /// Starts the periodic check. The /proc reads of the liveness check (a few per process of
    /// each ready worker's tree: 1.7 ms for 8 workers of 11 threads each here) run on a thread
    /// of their own, like the memory reads; the decision runs on the loop.
    func startLivenessChecks() {
        _ = liveness  // its clock starts now: no deadline falls before now + the interval
        scheduleLivenessCheck(records: [])
    }

    /// The ready workers the checks look at: not those baton already stops.
    private var checkedWorkers: [Worker] {
        slots.flatMap(\.workers).filter(\.isReadyAndNotStopping)
    }

    private func record(_ worker: Worker, states: [Character]) -> WorkerLiveness.Worker {
        WorkerLiveness.Worker(
            pid: worker.pid, readyAt: worker.readyAt ?? worker.startedAt, watchdog: worker.watchdogInterval,
            lastPing: worker.lastWatchdog, processStates: states)
    }

    /// One timer at a time: the next is scheduled when a check (with its read) is done.
    private func scheduleLivenessCheck(records: [WorkerLiveness.Worker]) {
        let now = loop.now()
        // With neither check configured, look again after a memory check interval: a reload
        // may turn one on.
        let next =
            liveness.nextCheck(now: now, workers: records, fallback: config.readiness.watchdog)
            ?? now + config.memory.checkInterval
        loop.schedule(after: next - now) { [unowned self] in self.livenessCheck() }
    }

    private func livenessCheck() {
        guard phase != .stopping else { return }
        for address in deadListeners where reportedDeadListeners.insert(address).inserted {
            logger.error("\(Self.deadListenerProblem(address))")
        }
        liveness.settings = .init(stoppedTimeout: config.readiness.stoppedTimeout)
        let pids = checkedWorkers.map(\.pid)
        guard liveness.wantsProcessStates, !pids.isEmpty else {
            evaluateLiveness(states: [:])
            return
        }
        loop.offload({ [table = host.processes] in Self.processStates(ofTrees: pids, in: table) }) { [unowned self] states in
            self.evaluateLiveness(states: states)
        }
    }

    /// Runs the checks on what is known now plus the process states just read (by pid; a
    /// worker without any is not judged by the liveness check this time).
    private func evaluateLiveness(states: [pid_t: [Character]]) {
        guard phase != .stopping else { return }
        // Pings that arrived but were not read yet (a loop that woke late may run this timer
        // before the notify sockets' events) count: read them first.
        for worker in checkedWorkers where worker.watchdogInterval != nil && worker.notifyFD >= 0 { readNotify(worker) }
        repairNotifySocketsBeforeTheWatchdog(checkedWorkers)
        let workers = checkedWorkers
        let verdicts = liveness.check(now: loop.now(), workers: workers.map { record($0, states: states[$0.pid] ?? []) })
        if let stalled = liveness.stalled {
            logger.warning(
                "watchdog: baton itself did not run for \(Units.formatElapsed(stalled)) (stopped, or starved of CPU): every worker's watchdog counts from now")
        }
        if liveness.allMissed {
            logger.warning(
                "watchdog: every worker missed its watchdog at once (the host stalled?): their watchdogs count from now, once; missed again, they are replaced")
        }
        for verdict in verdicts {
            guard let worker = workers.first(where: { $0.pid == verdict.pid }) else { continue }
            replaceUnresponsive(worker, reason: verdict.reason, detail: verdict.detail)
        }
        armLivenessProbes(checkedWorkers)
        scheduleLivenessCheck(records: checkedWorkers.map { record($0, states: []) })
    }

    /// `WATCHDOG=trigger` from a worker's tree: systemd's meaning, a watchdog timeout now.
    func watchdogTriggered(_ worker: Worker) {
        replaceUnresponsive(worker, reason: .watchdog, detail: "sent WATCHDOG=trigger")
    }

    /// Stops a worker that no longer answers for itself, like a crash: the stop signal, then
    /// SIGCONT (a stopped process acts on neither SIGTERM nor a drain until it runs again), and
    /// SIGKILL after `stop.timeout`. When it has exited, the exit path restarts the slot with
    /// `reason` (counted in status and metrics), or fails the rollout whose new worker it was.
    func replaceUnresponsive(_ worker: Worker, reason: RestartReason, detail: String) {
        guard worker.state == .ready || worker.state == .starting, worker.stopReason == nil else { return }
        logger.warning(
            "worker \(detail): replacing it",
            metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid), "reason": .string(reason.rawValue)])
        worker.stopReason = .restart(reason)
        operation?.report("slot \(worker.slot): pid \(worker.pid) \(detail): replacing it")
        host.signalWorker(pid: worker.pid, pidfd: worker.pidfd, config.stop.signal)
        host.signalWorker(pid: worker.pid, pidfd: worker.pidfd, SIGCONT)
        killAfterStopTimeout(worker)
    }

    /// The state letters of the processes of each pid's tree (a process that is gone meanwhile
    /// is left out). Safe on any thread: only reads of `table`.
    static func processStates(ofTrees pids: [pid_t], in table: any ProcessTable) -> [pid_t: [Character]] {
        var states: [pid_t: [Character]] = [:]
        for pid in pids { states[pid] = table.processStates(ofTree: pid) }
        return states
    }
}
