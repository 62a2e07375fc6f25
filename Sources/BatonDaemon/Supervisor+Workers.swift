import BatonCore
import BatonSystem
import Glibc
import Logging

/// Starting, readiness, output, exits and stops of workers.
extension Supervisor {
    /// Which place in the slot a new worker takes (`SlotLifecycle.Role`).
    typealias Role = SlotLifecycle.Role

    /// Starts queued first starts while fewer than `start_concurrency` are booting.
    func fillStartQueue() {
        let booting = slots.filter { $0.current?.state == .starting }.count
        var free = config.app.startConcurrency - booting
        if let allowed = paceTakeOver() { free = min(free, allowed) }
        while free > 0, !startQueue.isEmpty, phase != .stopping {
            let index = startQueue.removeFirst()
            startWorker(slots[index], role: .current, reason: nil)
            free -= 1
        }
    }

    /// Spawns a worker for `slot`. A failure to spawn counts as a failed start.
    func startWorker(_ slot: Slot, role: Role, reason: RestartCause?) {
        cancelRespawn(slot)
        if waitsForMold(slot, role: role, reason: reason) { return }
        // A replacement counts as a restart only once it serves (`promoteReplacement`).
        let generation = slot.life.start(role: role, reason: reason)
        let spec = role == .replacement ? rolloutSpec ?? slot.spec : slot.spec
        extendTimeout()
        do {
            let worker = try spawn(slot: slot.index, generation: generation, spec: spec)
            switch role {
            case .current: slot.current = worker
            case .replacement:
                slot.replacement = worker
                worker.startedByOperation = operation?.number
            }
            logger.info(
                "worker started",
                metadata: ["slot": .stringConvertible(slot.index), "pid": .stringConvertible(worker.pid), "release": .string(spec.release)])
            beginReadiness(worker)
            recordInstance()
        } catch {
            // What keeps the notify folder from being made, when that is why (a re-audit: a
            // deploy failed on "bind …: Not a directory" without the status's reason).
            let text = "\(error)" + DescriptorLimit.hint(error) + (runtimeTrouble.map { " (\($0))" } ?? "")
            logger.error("cannot start worker: \(text)", metadata: ["slot": .stringConvertible(slot.index)])
            startFailed(slot: slot, role: role, worker: nil, reason: .spawnFailed(text), uptime: nil, shortage: DescriptorLimit.isShortage(error))
        }
        feedWatchdogIfDue()
        publishStatus()
    }

    /// Spawns one worker with its notify socket (notify mode or a watchdog) and its output pipe.
    /// Both are owned from the moment they exist: a failure anywhere closes them (with the
    /// worker's record, once it took them) and removes the socket's path, and the pipe's write
    /// end closes once the worker has its copy.
    private func spawn(slot: Int, generation: Int, spec: WorkerSpec) throws -> Worker {
        var notify: OwnedDescriptor? = nil
        var notifyPath: String?  // set once the socket is bound there
        do {
            if config.readiness.mode == .notify || config.readiness.watchdog != nil {
                restoreNotifyDirectory()
                let path = notifyDirectory + "/" + WorkerContract.notifySocketName(slot: slot, generation: generation, batonPID: getpid())
                notify = try bindNotifySocket(at: path, credentials: spec.credentials)
                notifyPath = path
            }
            let output = try CBatonLinuxShim.outputPipe()
            // Room for what an orphan writes until the next baton reads it (see WorkerContract).
            CBatonLinuxShim.enlargePipe(output.read.rawValue, to: WorkerContract.outputPipeCapacity)
            let environment = WorkerEnvironment.build(
                inherited: options.environment, account: spec.credentials?.account ?? [], fileVariables: [], configVariables: spec.variables,
                listenerNames: listeners.map(\.name), notifySocket: notifyPath,
                extra: [EnvVar(name: "BATON_SLOT", value: String(slot)), EnvVar(name: "BATON_RELEASE", value: spec.release)],
                watchdog: config.readiness.watchdog, directory: WorkerEnvironment.pwd(spec.directory, resolve: Self.resolved))
            var request = SpawnRequest(
                argv: spec.argv, environment: environment, directory: spec.directory, passFDs: listeners.map(\.fd),
                setListenPID: !listeners.isEmpty, stdout: output.write.rawValue, stderr: output.write.rawValue,
                credentials: spec.credentials)
            request.setWatchdogPID = config.readiness.watchdog != nil
            request.holdFD = output.read.rawValue
            request.holdTarget = WorkerContract.outputReaderFD
            request.memoryMerge = config.memory.mergeable
            // Not in the child before execve (the spawn has no nice value): the spawn waits on this loop
            // for the child's execve, and a child made nicer before it waits for the CPU behind
            // everything else (0.6 s for one spawn at load average 25 on 2 cores). It gets its
            // boot priority once it runs its program.
            let nice = bootNice()
            // Before the spawn, which waits for the child's execve: a starved audit stopped baton
            // there while a 1 s boot ran, and its READY=1, sent before the spawn returned, made it
            // `ready after 0ms`.
            let startedAt = loop.now()
            let process = try spawnProcess(request, spec: spec)
            if process.memoryMergeErrno != 0 { memoryMergeRefused(errno: process.memoryMergeErrno) }
            let worker = Worker(slot: slot, generation: generation, process: process, spec: spec, startedAt: startedAt)
            worker.folder = Self.resolved(spec.directory)
            worker.startTicks = host.processes.startTime(of: worker.pid)
            if !moldMode { startNicer(worker, by: nice) }
            worker.ownedNotify = notify.take()
            worker.notifyPath = notifyPath
            worker.ownedOutput = consume output.read
            worker.watchdogInterval = config.readiness.watchdog
            do {
                try watch(worker)
            } catch {
                // Running but unwatched, it would serve on the listening socket with nobody to
                // reap, stop or replace it: killed (reaped as a stray on SIGCHLD), and the slot
                // retries as after a failed spawn. Its record closes its descriptors.
                host.signalGroup(worker.pid, SIGKILL)
                throw error
            }
            return worker
        } catch {
            // The descriptors are closed already (or close with the record that took them); the
            // socket's file goes on every failure, a worker's record not removing it.
            if let notifyPath { unlink(notifyPath) }
            throw error
        }
    }

    /// Registers a worker's pidfd, output pipe and notify socket with the loop, all or none
    /// (`watchChannels`).
    func watch(_ worker: Worker) throws {
        try watchChannels(worker, exited: { $0.workerPidfdReadable($1) }, notified: { $0.readNotify($1) })
    }

    // MARK: - Notify messages and output

    /// A notify socket queues this many datagrams (`net.unix.max_dgram_qlen`) before a sender
    /// blocks or, sending without blocking as it should, drops its message.
    static let notifyQueueLength = ProcFS.read("/proc/sys/net/unix/max_dgram_qlen").flatMap { Int($0.filter(\.isNumber)) } ?? 10

    func readNotify(_ worker: Worker) {
        var received = 0
        // A queue found full may have dropped the worker's WATCHDOG=1 (a worker reporting its
        // requests under load fills it within milliseconds of baton stopping to read): its
        // watchdog counts from now. A pause audit saw baton stopped for 1.9 to 2.6 s (a 2 s
        // watchdog) replace 1 to 3 healthy workers under load (4 of 14 runs); a hung worker
        // sends nothing and fills nothing.
        defer {
            if received >= Self.notifyQueueLength, worker.watchdogInterval != nil, worker.state == .ready {
                worker.lastWatchdog = loop.now()
            }
        }
        for _ in 0..<notifyMessagesPerWakeup {
            guard let message = CBatonLinuxShim.receiveWithCredentials(worker.notifyFD) else { return }
            guard message.pid > 0, fromWorkersTree(worker, pid: message.pid, uid: message.uid) else {
                let said = LogText.escaped(String(decoding: message.bytes.prefix(64), as: UTF8.self))
                warnNotify(worker, "notify message from pid \(message.pid) outside worker \(worker.pid)'s tree ignored (\(said))")
                continue
            }
            received += 1
            // Its start alone could read as something else ("X_BATON_REQUESTS=12" cut from 123456789):
            // dropped whole, as systemd drops a notify message that does not fit.
            guard !message.truncated else {
                warnNotify(worker, "notify message of over 4096 bytes from pid \(message.pid) ignored")
                continue
            }
            for line in WorkerContract.notifyFields(message.bytes) {
                if line == "READY=1" {
                    // Its boot ends when it sent READY=1, not when baton read it (a pause audit:
                    // `ready after 8.40s` for a 1 s boot read after baton was stopped for 8 s).
                    worker.readyReadLate = message.sentAt.map { .seconds(max(0, host.wallTime - $0)) }
                    readinessEvent(worker, .notified)
                    worker.readyReadLate = nil
                } else if line.hasPrefix("STATUS=") {
                    worker.statusText = String(line.dropFirst(7))
                } else if line.hasPrefix(Self.requestsField) {
                    requestsReported(worker, String(line.dropFirst(Self.requestsField.count)), from: message.pid)
                } else if line == "STOPPING=1" {
                    logger.info("worker is stopping", metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
                } else if line == "WATCHDOG=1" {
                    worker.lastWatchdog = loop.now()
                } else if line == "WATCHDOG=trigger" {
                    watchdogTriggered(worker)
                } else if line.hasPrefix(Self.extendTimeoutField) {
                    extendReadiness(worker, String(line.dropFirst(Self.extendTimeoutField.count)))
                } else if let name = line.split(separator: "=", maxSplits: 1).first.map(String.init),
                    WorkerContract.unsupportedNotifyFields.contains(name), worker.unsupportedNotifySeen.insert(name).inserted
                {
                    logger.info(
                        "worker sent \(name)=, which baton does not act on (ignored; it acts on \(WorkerContract.supportedNotifyFields))",
                        metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
                }
            }
        }
    }

    /// Whether a notify message from `pid` (of `uid`) is the worker's: from its tree, or from a
    /// process gone already with the worker's uid or root's, which only a process of the
    /// worker's could send (the socket is the worker user's, 0600). A contract audit: a child
    /// that sent READY=1 and exited at once was gone before baton looked it up in /proc, and 8
    /// of 29 starts failed on "not ready" (systemd-notify's BARRIER=1 was warned about too).
    private func fromWorkersTree(_ worker: Worker, pid: pid_t, uid: uid_t) -> Bool {
        if host.processes.isInTree(pid, root: worker.pid) { return true }
        guard !host.processes.exists(pid) else { return false }
        return uid == 0 || uid == (worker.spec.credentials?.uid ?? getuid())
    }

    /// A warning about a worker's notify messages, at most one per 10 s per worker, with how
    /// many were held back since the last one.
    func warnNotify(_ worker: Worker, _ text: String) {
        guard let held = worker.notifyWarnings.admit(now: loop.now()) else { return }
        let more = held > 0 ? " (\(held) more notify warnings held back since the last one)" : ""
        logger.warning(
            "\(text)\(more)",
            metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
    }

    // MARK: - Exits

    /// The worker's pidfd became readable: it exited. Kill what is left of its
    /// group while the zombie still holds the pid (so the group id cannot be
    /// reused), then reap it.
    func workerPidfdReadable(_ worker: Worker) {
        guard worker.state != .exited, !awaitsItsGroup(worker) else { return }
        // Its children left in its group, handed to baton as it exited, before the group's SIGKILL.
        let leftInGroup = worker.readyAt == nil ? orphansInGroup(of: worker) : []
        guard host.killGroupIfLeaderExited(pid: worker.pid, pidfd: worker.pidfd) else { return }
        dyingGroups[worker.pid] = loop.now()
        let exit = collectExit(pid: worker.pid, pidfd: worker.pidfd) ?? .exited(-1)
        worker.exit = exit
        if diedOfOOM(worker, exit: exit) {
            worker.stopReason = .restart(.oom)
            // Before its tree settled: what its release's workers take is not known.
            if worker.state == .starting || memoryMonitor.footprints.isSettling(pid: worker.pid) {
                memoryMonitor.footprints.killedBeforeSettling(release: worker.spec.release)
            }
        }
        memoryMonitor.footprints.workerExited(pid: worker.pid)
        let previous = worker.state
        worker.state = .exited
        // Its output pipe's inode, for what escaped from it and holds it (cleanUp closes it).
        let outputInode = worker.outputFD >= 0 ? Self.inode(of: worker.outputFD) : nil
        cleanUp(worker)
        let slot = slots[worker.slot]
        let uptime = loop.now() - worker.startedAt
        logger.log(
            level: previous == .draining ? .info : .warning,
            "worker exited (\(exit)) after \(Units.formatElapsed(uptime))",
            metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid), "was": .string(previous.rawValue)])

        // Out of its place in the slot first; what the exit means is `WorkerExit`'s (BatonCore).
        let place: WorkerExit.Place?
        if let i = slot.draining.firstIndex(where: { $0 === worker }) {
            slot.draining.remove(at: i)
            place = .draining
        } else if slot.replacement === worker {
            slot.replacement = nil
            place = .replacement
        } else if slot.current === worker {
            slot.current = nil
            place = .current
        } else {
            place = nil
        }
        let stage: WorkerExit.Stage = previous == .starting ? .starting : previous == .ready ? .ready : .draining
        // The rollout's own worker (which runs its release): one of the same release that it did not start (a policy
        // restart's or reload's old worker) failing is its slot's failure, not the release's (a
        // memory audit: an old worker killed while its replacement booted failed the restart,
        // and the replacement was left serving unsupervised).
        let runsRolloutRelease = operation.map { $0.phase == .rollingOut && worker.startedByOperation == $0.number } ?? false
        // One that never got ready gives its slot up, and what escaped from it goes too; so does
        // what escaped from a worker of a release that failed (an apps re-audit: new workers
        // that were ready left their daemons serving the failed release after the rollback).
        let ofFailedRelease =
            worker.ranFailedRelease
            || operation.map { op in
                worker.startedByOperation == op.number && op.kind != .policy
                    && (op.phase == .rollingBack || op.failure != nil || (op.phase == .rollingOut && stage != .draining))
            } ?? false
        let escapees =
            leftInGroup
            + ((worker.readyAt == nil || ofFailedRelease) && phase != .stopping
                ? killEscapees(of: worker, failedStart: worker.readyAt == nil, outputInode: outputInode) : [])
        if let place {
            let verdict = WorkerExit.classify(
                place: place, stage: stage, stopReason: worker.stopReason?.restartReason, exit: "\(exit)", pid: worker.pid,
                runsRolloutRelease: runsRolloutRelease, stopText: worker.stopText)
            switch Self.sayingDaemonized(verdict, exit: exit, escapees: escapees) {
            case .drained:
                drainedWorkerExited(worker, slot: slot, exit: exit)
            case .replacementFailed(let reason):
                startFailed(slot: slot, role: .replacement, worker: worker, reason: RestartCause(.startFailed, detail: reason), uptime: nil)
            case .newReleaseFailed(let reason, let otherwise):
                // The release is bad; the rollout fails and rolls back.
                lastFailureOutput = worker.recentOutput.elements
                slot.life.rolloutWorkerCrashed(otherwise)
                // With its last output, as a new worker's failure says (a CI-door audit: a canary
                // that crashed once promoted failed the deploy without it, in its line and history).
                let full =
                    reason + (FailureOutput.summary(lastFailureOutput, searchable: Self.ownFailureLines(worker, exit), earlier: worker.earlierError) ?? "")
                if rolloutEvent({ $0.newWorkerFailed(slot: slot.index, reason: full) }) {
                    restartsByReason[.startFailed, default: 0] += 1
                } else {
                    // Not the rollout's worker (a policy restart or reload keeps the release).
                    startFailed(slot: slot, role: .current, worker: worker, reason: otherwise, uptime: uptime)
                }
            case .slotFailed(let reason, let countsUptime):
                startFailed(slot: slot, role: .current, worker: worker, reason: reason, uptime: countsUptime ? uptime : nil)
            }
        }
        reportEscapedChildren()
        recordInstance()
        publishStatus()
        finishShutdownIfDone()
    }

    /// Drops the slot's pending respawn and its timer.
    func cancelRespawn(_ slot: Slot) {
        if let t = slot.respawnTimer { loop.cancel(t) }
        slot.respawnTimer = nil
        slot.life.cancelRespawn()
    }

    private func cleanUp(_ worker: Worker) {
        if let probe = worker.probe {
            host.signalProcessAndGroup(pid: probe.pid, pidfd: probe.pidfd, SIGKILL)
            loop.unregister(fd: probe.pidfd)
            worker.probe = nil
            if collectExit(pid: probe.pid, pidfd: probe.pidfd) == nil { watchDyingProbe(probe) } else { probe.close() }
        }
        releaseChannels(worker)
    }

    /// A probe SIGKILLed with its worker that has not exited yet stays baton's own until it has:
    /// a CPU audit saw it reported, alive for a moment after the SIGKILL, as a process that "left
    /// its worker's process group … may hold the listening sockets" (4 of 4 deploys).
    private func watchDyingProbe(_ probe: ChildProcess) {
        dyingProbes.append(probe)
        let gone = { [unowned self] in
            guard self.collectExit(pid: probe.pid, pidfd: probe.pidfd) != nil else { return }
            self.loop.unregister(fd: probe.pidfd)
            self.dyingProbes.removeAll { $0 === probe }
            probe.close()
        }
        do {
            try loop.register(fd: probe.pidfd, events: .readable) { _ in gone() }
        } catch {
            // Unwatched: reaped as a stray when it exits.
            dyingProbes.removeAll { $0 === probe }
            probe.close()
        }
    }

    /// Of `worker`'s recent output, how many last lines may say why it failed: none unless it
    /// exited with a failure of its own (a non-zero code, not a signal); those since it was ready
    /// if it was (its boot's lines, a handled exception among them, are not why).
    static func ownFailureLines(_ worker: Worker, _ exit: CBatonLinuxShim.Exit?) -> Int {
        guard case .exited(let code) = exit, code != 0 else { return 0 }
        guard let atReady = worker.outputAtReady else { return .max }
        return worker.recentOutput.appended - atReady
    }
}
