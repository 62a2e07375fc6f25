import BatonCore
import BatonSystem
import Glibc
import Logging

/// Readiness of new workers: `notify` (READY=1 on the worker's own socket), `delay`, or an
/// `exec` probe; a worker not ready within `readiness.timeout` is killed. The first time every
/// slot serves, READY=1 goes to systemd and the start-up ends.
extension Supervisor {
    /// The worker was spawned: its readiness gate (`ReadinessGate`, BatonCore) starts.
    func beginReadiness(_ worker: Worker) {
        worker.readiness = ReadinessGate(config.readiness)
        limitBootNice(worker, timeout: config.readiness.timeout)
        readinessEvent(worker, .began)
    }

    /// Feeds one event to the gate of a worker that is starting, and carries out its answer.
    func readinessEvent(_ worker: Worker, _ event: ReadinessGate.Event) {
        guard worker.state == .starting, var gate = worker.readiness else { return }
        let actions = gate.handle(event)
        worker.readiness = gate
        for action in actions {
            switch action {
            case .armTimeout(let timeout):
                readinessTimer(worker, after: timeout, .timeoutPassed)
            case .armDelay(let delay):
                readinessTimer(worker, after: delay, .delayPassed)
            case .scheduleProbe(let delay):
                readinessTimer(worker, after: delay, .probeDue)
            case .runProbe:
                runProbe(worker)
            case .ready:
                workerBecameReady(worker)
            case .kill(let reason):
                // What was awaited (a docs audit: an app that never notifies was "not ready" with
                // no word of READY=1 or [readiness] mode).
                var awaited =
                    switch config.readiness.mode {
                    case .notify: " (no READY=1 on its NOTIFY_SOCKET; for an app that sends none, [readiness] mode = \"delay\" or \"exec\")"
                    case .exec: " (its readiness probe never exited 0)"
                    case .delay: ""
                    }
                // A boot that spent half its time waiting for a CPU was starved, not silent (a CPU
                // audit: the READY=1 hint for an app that sends it, under a busy host's load).
                if let waited = host.treeCPUTime(of: worker.pid)?.waitedSeconds, waited >= Self.seconds(gate.timeout) / 2 {
                    // The boots baton ran at once, its own CPU limit, or other load: all three
                    // queue a boot (a CPU audit: "the host is busy" for baton's own 8 boots at
                    // once on one CPU). Such a boot counts as a whole CPU's: the next try is
                    // narrower (it was never recorded, and three tries failed alike).
                    bootBudget.recordStarved()
                    let booting = slots.flatMap(\.workers).filter { $0.state == .starting }.count
                    awaited =
                        " (it waited \(Units.formatElapsed(.milliseconds(Int64(waited * 1000)))) of them for a CPU, \(booting) boot\(booting == 1 ? "" : "s") running on baton's \(bootBudget.cpus) CPU\(bootBudget.cpus == 1 ? "" : "s"): fewer at once (--max-surge), a longer [readiness] timeout, or more CPU)"
                }
                let notReady = "not ready after \(Units.formatDuration(gate.timeout))\(awaited)"
                logger.warning(
                    "worker \(notReady): killing it", metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
                worker.stopReason = .restart(reason)
                // The deploy's reply says it too, not only the log.
                worker.stopText = "\(reason.rawValue): \(notReady)"
                kill(worker)
            }
        }
    }

    private func readinessTimer(_ worker: Worker, after delay: Duration, _ event: ReadinessGate.Event) {
        worker.timers.append(
            loop.schedule(after: delay) { [unowned self, unowned worker] in
                // A timeout a worker extended (`EXTEND_TIMEOUT_USEC=`) waits until then.
                if event == .timeoutPassed, let until = worker.readinessExtendedUntil, until > self.loop.now() {
                    self.readinessTimer(worker, after: until - self.loop.now(), event)
                    return
                }
                self.readinessEvent(worker, event)
            })
    }

    /// `EXTEND_TIMEOUT_USEC=N` from a starting worker: its readiness timeout passes no sooner
    /// than N µs from now, as systemd extends a `Type=notify` unit's start timeout (an app that
    /// migrates at boot keeps sending it). Ignored once it is ready, and when `text` is no
    /// number.
    func extendReadiness(_ worker: Worker, _ text: String) {
        guard worker.state == .starting else { return }
        guard let micros = UInt64(text), micros <= UInt64(Int64.max / 1000) else {
            warnNotify(worker, "\(Self.extendTimeoutField)\(ControlProtocol.printable(String(text.prefix(32)))) ignored: not a number of microseconds")
            return
        }
        let until = loop.now() + .microseconds(Int64(micros))
        guard until > (worker.readinessExtendedUntil ?? .zero) else { return }
        if worker.readinessExtendedUntil == nil {
            logger.info(
                "worker extended its readiness timeout by \(Units.formatDuration(.microseconds(Int64(micros)))) from now (EXTEND_TIMEOUT_USEC)",
                metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
        }
        worker.readinessExtendedUntil = until
    }

    private func runProbe(_ worker: Worker) {
        do {
            worker.timers.append(try spawnProbe(config.readiness.probe, for: worker))
        } catch {
            logger.warning("readiness probe could not start: \(error)", metadata: ["slot": .stringConvertible(worker.slot)])
            readinessEvent(worker, .probeCouldNotStart)
        }
    }

    /// Runs `argv` against `worker` (`BATON_WORKER_PID`, in its release folder, as its user):
    /// the probe's exit comes to `probeExited`, and it is killed after `probe_timeout`.
    /// Returns that timer (the readiness probe keeps it with the worker's timers).
    func spawnProbe(_ argv: [String], for worker: Worker) throws -> EventLoop.Token {
        let environment = WorkerEnvironment.build(
            inherited: options.environment, account: worker.spec.credentials?.account ?? [], fileVariables: [],
            configVariables: worker.spec.variables, listenerNames: [],
            notifySocket: nil, extra: [EnvVar(name: "BATON_WORKER_PID", value: String(worker.pid))])
        let request = SpawnRequest(argv: argv, environment: environment, directory: worker.spec.directory, credentials: worker.spec.credentials)
        let probe = try host.spawn(request)
        do {
            try loop.register(fd: probe.pidfd, events: .readable) { [unowned self, unowned worker] _ in
                self.probeExited(worker)
            }
        } catch {
            // Unwatched, it would hold `worker.probe` for good (no next run, no probe timeout):
            // killed, reaped as a stray on SIGCHLD, and the caller runs the next one later.
            host.signal(pidfd: probe.pidfd, SIGKILL)
            throw error
        }
        worker.probe = probe
        worker.probeTimeoutWait = nil
        return loop.schedule(after: config.readiness.probeTimeout) { [weak worker, host, pid = probe.pid] in
            guard let worker, let running = worker.probe, running.pid == pid else { return }
            // How long it waited for a CPU: a probe starved by a busy host is not the worker's failure.
            worker.probeTimeoutWait = host.treeCPUTime(of: pid)?.waitedSeconds ?? 0
            // Its whole group: a probe's children (`sh -c 'sleep …'`) outlived it, handed to baton
            // and reported as strays (a CPU re-audit: 28 of them after 30 s).
            host.signalProcessAndGroup(pid: pid, pidfd: running.pidfd, SIGKILL)
        }
    }

    func probeExited(_ worker: Worker) {
        guard let probe = worker.probe, let exit = collectExit(pid: probe.pid, pidfd: probe.pidfd) else { return }
        loop.unregister(fd: probe.pidfd)
        probe.close()
        worker.probe = nil
        guard worker.state == .starting else {
            livenessProbeExited(worker, exit: exit)
            return
        }
        readinessEvent(worker, .probeExited(succeeded: exit == .exited(0)))
    }

    /// The gate said ready.
    private func workerBecameReady(_ worker: Worker) {
        guard worker.state == .starting else { return }
        worker.state = .ready
        worker.readyAt = loop.now()
        worker.outputAtReady = worker.recentOutput.appended
        let bootTime = max(.zero, loop.now() - worker.startedAt - (worker.readyReadLate ?? .zero))
        worker.measuredBoot = bootTime
        logger.info(
            "worker ready after \(Units.formatElapsed(bootTime))",
            metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
        recordReadyFootprint(worker)
        workerBooted(worker, bootTime: bootTime)
        armLivenessProbes([worker])
        let slot = slots[worker.slot]
        if let t = slot.stableTimer { loop.cancel(t) }
        let window = slot.life.ready(generation: worker.generation, now: loop.now())
        slot.stableTimer = loop.schedule(after: window) { [unowned self, unowned slot, generation = worker.generation] in
            slot.stableTimer = nil
            let serving = slot.current.flatMap { $0.state == .ready ? $0.generation : nil }
            slot.life.stabilityWindowEnded(generation: generation, serving: serving)
            self.publishStatus()
        }
        if slot.replacement === worker {
            // When it sent READY=1 (a re-audit: without a stability window, a release ready before
            // its deadline but read after it, baton stopped meanwhile, was rolled back).
            rolloutEvent(at: loop.now() - (worker.readyReadLate ?? .zero)) { $0.newWorkerReady(slot: worker.slot) }
            watchStability(worker)
        } else {
            fillStartQueue()
            checkAllReady()
            // Every slot may serve again: a count past its limit reported meanwhile is due.
            recycleByRequestCount()
        }
        publishStatus()
    }

    /// READY=1 to systemd once every slot serves for the first time.
    func checkAllReady() {
        guard phase == .starting, readyCount == slots.count else { return }
        let next = operations.startUpFinished()
        sentReady = true
        notifier.ready(status: summary)
        lastStatusLine = summary
        logger.info("all \(slots.count) workers ready")
        sayNotifyFailure()
        drainOrphans()
        performOperations(next)
    }

}
