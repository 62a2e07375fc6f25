import BatonCore
import BatonSystem
import Glibc
import Logging

/// Mold mode (`[app] mode = "mold"`, docs/MOLD.md): one mold per release loads the app once and
/// forks that release's workers on request. A forked worker is a `Worker` like an exec'd one
/// (same sockets, readiness, drain, memory and deploy); only its spawn differs. A start whose
/// mold is not ready waits for it; a mold that dies after it was ready is replaced with
/// backoff, its workers untouched (they are baton's children); a mold that never becomes
/// ready fails the starts that waited for it.
extension Supervisor {
    /// Whether workers are forked by a mold.
    var moldMode: Bool { config.app.mode == .mold }

    /// In mold mode, a start whose mold is not ready waits for it (the mold is started if
    /// none is): returns true, and `startWorker` does nothing more now.
    func waitsForMold(_ slot: Slot, role: Role, reason: RestartCause?) -> Bool {
        guard moldMode else { return false }
        let spec = role == .replacement ? rolloutSpec ?? slot.spec : slot.spec
        if let mold = moldBook.mold(for: spec), mold.state == .ready { return false }
        moldBook.waiters.removeAll { $0.slot == slot.index && $0.role == role }
        moldBook.waiters.append(MoldWaiter(slot: slot.index, role: role, reason: reason, spec: spec))
        if moldBook.mold(for: spec) == nil, moldBook.restartTimers[spec.releaseKey] == nil { startMold(spec) }
        return true
    }

    /// Spawns a worker: exec'd by the host, or (mold mode) forked by its release's ready mold
    /// in one bounded round trip on the loop, so its pidfd is open before any SIGCHLD is read.
    /// A mold that fails the round trip is killed and replaced.
    func spawnProcess(_ request: SpawnRequest, spec: WorkerSpec) throws -> ChildProcess {
        guard moldMode else { return try host.spawn(request) }
        guard let mold = moldBook.mold(for: spec), mold.state == .ready, let link = mold.link else {
            throw DaemonError("no ready mold for \(spec.release)")
        }
        var request = request
        // The worker's end of its promotion channel, if any: closed when this returns (the
        // worker has its copy by then, or there is no worker).
        var workerEnd: OwnedDescriptor? = nil
        let promotion = try addPromotionChannel(&request, spec: spec, workerEnd: &workerEnd)
        defer { workerEnd = nil }
        do {
            let process = try link.spawn(request, timeout: config.mold.spawnTimeout)
            // A mold's answer is checked to be baton's child, which the mold itself and every
            // worker also are: a pid baton already watches would get a second record, reaped
            // by the first, and its pidfd left readable forever (the loop spun on it).
            if supervisedPIDs.contains(process.pid) {
                process.close()
                throw MoldError("the mold answered with pid \(process.pid), a process baton already supervises")
            }
            if let promotion { moldBook.promotable[process.pid] = promotion }
            return process
        } catch {
            logger.error("mold \(mold.pid) failed a spawn (\(error)): killing it; it is replaced", metadata: ["release": .string(spec.release)])
            killMold(mold, replace: true)
            if request.stdout >= 0, let pipe = Self.inode(of: request.stdout) {
                let until = loop.now() + Self.abandonedSpawnWatch
                moldBook.abandonedOutputs = Array((moldBook.abandonedOutputs + [(pipe, until)]).suffix(16))
            }
            stopAbandonedSpawns()
            throw error
        }
    }

    /// How long a failed spawn's pipe is looked for: a mold's intermediate child may fork the
    /// worker seconds after the mold was killed (a second audit: 4 to 6 s).
    static let abandonedSpawnWatch: Duration = .seconds(30)

    /// Stops each child of baton that a mold forked for a spawn baton gave up on (its reply
    /// came too late, or could not be read): it would serve the listening sockets unsupervised,
    /// a previous release after a deploy included (a mold audit: 19 of 60 requests after a
    /// deploy that said every slot was new). It holds that spawn's output pipe, at 1 and 2 once
    /// it placed its descriptors, else where the mold received it, and whatever it did with
    /// them after (a second audit: one that sent its output to a log file escaped a check of
    /// its descriptor 1 alone). Run when the spawn fails (the mold replies once the worker is
    /// baton's child), on each SIGCHLD, and every 250 ms while a pipe is looked for (an
    /// intermediate child that outlives the mold forks the worker later).
    func stopAbandonedSpawns() {
        let now = loop.now()
        moldBook.abandonedOutputs.removeAll { $0.until <= now }
        guard !moldBook.abandonedOutputs.isEmpty else { return }
        let pipes = Set(moldBook.abandonedOutputs.map(\.pipe))
        for pid in escapedChildren() where !host.processes.pipes(of: pid).isDisjoint(with: pipes) {
            reportedEscapees.insert(pid)
            logger.warning("pid \(pid) was forked by a mold for a spawn that failed: it is no worker of baton's; SIGKILL")
            killUnsupervised(pid)
        }
        guard moldBook.abandonedTimer == nil, phase != .stopping else { return }
        moldBook.abandonedTimer = loop.schedule(after: .milliseconds(250)) { [unowned self] in
            self.moldBook.abandonedTimer = nil
            self.stopAbandonedSpawns()
        }
    }

    /// The first actions of a rollout: in mold mode they wait until the mold of the rollout's
    /// release is ready, so that nothing is drained or started before the new mold can fork
    /// (a new mold that never becomes ready fails the operation with nothing changed).
    func performAfterMold(_ actions: [RollingRestart.Action]) {
        guard moldMode, let spec = rolloutSpec, let op = operation, moldBook.mold(for: spec)?.state != .ready else {
            perform(actions)
            return
        }
        moldBook.pendingRollout = (op.number, actions)
        op.report("waiting for the mold of \(spec.release) to be ready")
        if moldBook.mold(for: spec) == nil, moldBook.restartTimers[spec.releaseKey] == nil { startMold(spec) }
    }

    /// The rollout waiting for its mold goes on (`ready`), or fails with nothing changed.
    private func resumeRollout(spec: WorkerSpec, failure: String?) {
        guard let (number, actions) = moldBook.pendingRollout, rolloutSpec == spec else { return }
        moldBook.pendingRollout = nil
        guard let op = operation, op.number == number, rollout != nil else { return }
        guard let failure else {
            perform(actions)
            return
        }
        // Nothing was performed yet: the operation ends with every old worker serving.
        rollout = nil
        rolloutPlanner = nil
        rolloutFinished(.failed(slot: -1, reason: failure, replaced: []))
    }

    // MARK: - Start

    /// Starts the mold of `spec`, as a worker is started plus its channel (`BATON_MOLD_FD`).
    func startMold(_ spec: WorkerSpec) {
        if let t = moldBook.restartTimers.removeValue(forKey: spec.releaseKey) { loop.cancel(t) }
        // A fresh mold, cold: refork may promote a warmed worker over it again (a second audit:
        // once a promoted mold had crashed, its release never reforked again; nor a release
        // coming back after its mold was retired, a rollback or a deploy of the same folder).
        moldBook.reforked.remove(spec.releaseKey)
        moldBook.started += 1
        let path = notifyDirectory + "/" + WorkerContract.moldSocketName(started: moldBook.started, batonPID: getpid())
        var bound = false
        do {
            // Owned from the start: closed on every failure below, handed to the mold once it runs.
            restoreNotifyDirectory()
            let notify = try bindNotifySocket(at: path, credentials: spec.credentials)
            bound = true
            // The write end closes when this block ends: the mold has its copy by then.
            let output = try CBatonLinuxShim.outputPipe()
            let environment = WorkerEnvironment.build(
                inherited: options.environment, account: spec.credentials?.account ?? [], fileVariables: [], configVariables: spec.variables,
                listenerNames: listeners.map(\.name), notifySocket: path,
                extra: [
                    EnvVar(name: "BATON_SLOT", value: "mold"), EnvVar(name: "BATON_RELEASE", value: spec.release),
                    EnvVar(name: "BATON_MOLD_FD", value: String(3 + listeners.count)),
                ],
                watchdog: nil, directory: WorkerEnvironment.pwd(spec.directory, resolve: Self.resolved))
            var request = SpawnRequest(
                argv: spec.argv, environment: environment, directory: spec.directory, passFDs: listeners.map(\.fd),
                setListenPID: !listeners.isEmpty, stdout: output.write.rawValue, stderr: output.write.rawValue,
                credentials: spec.credentials)
            // `[memory] mergeable`: the mark survives fork, so the workers the mold forks carry it too.
            request.memoryMerge = config.memory.mergeable
            let (process, link) = try host.startMold(request)
            let mold = Mold(spec: spec, process: process, link: link, startedAt: loop.now())
            mold.ownedNotify = consume notify
            mold.notifyPath = path
            mold.ownedOutput = consume output.read
            do {
                try watchMold(mold)
            } catch {
                // As a worker the loop cannot watch (`spawn`): it would boot unseen, never ready
                // and never timed out; killed (reaped as a stray on SIGCHLD), its record dropped.
                host.signalGroup(mold.pid, SIGKILL)
                throw error
            }
            moldBook.molds.append(mold)
            recordInstance()
            let timeout = config.mold.startTimeout
            // The mold boots the app (its workers are forks of it): it boots nicer, as a worker would.
            startNicer(mold, by: bootNice())
            limitBootNice(mold, timeout: timeout)
            mold.timers.append(
                loop.schedule(after: timeout) { [unowned self, unowned mold] in
                    guard mold.state == .starting else { return }
                    let reason = "the mold of \(mold.spec.release) was not ready within \(Units.formatDuration(timeout)) ([mold] start_timeout)"
                    self.logger.error("\(reason): killing pid \(mold.pid)")
                    self.killMold(mold, replace: false)
                    self.failWaiters(mold.spec, reason: reason + self.lastOutput(mold))
                })
            logger.info("mold started", metadata: ["pid": .stringConvertible(mold.pid), "release": .string(spec.release)])
        } catch {
            if bound { unlink(path) }
            logger.error("cannot start the mold of \(spec.release): \(error)")
            failWaiters(spec, reason: "cannot start the mold: \(error)")
        }
        publishStatus()
    }

    /// Registers a mold's pidfd, output and notify socket with the loop, all or none
    /// (`watchChannels`).
    func watchMold(_ mold: Mold) throws {
        try watchChannels(mold, exited: { $0.moldPidfdReadable($1) }, notified: { $0.readNotify($1) })
    }

    func readNotify(_ mold: Mold) {
        for _ in 0..<notifyMessagesPerWakeup {
            guard let message = CBatonLinuxShim.receiveWithCredentials(mold.notifyFD) else { return }
            guard message.pid > 0, host.processes.isInTree(message.pid, root: mold.pid) else {
                logger.warning("notify message from pid \(message.pid) outside mold \(mold.pid)'s tree ignored")
                continue
            }
            guard !message.truncated else {
                logger.warning("notify message of over 4096 bytes from mold \(mold.pid) ignored")
                continue
            }
            if WorkerContract.notifyFields(message.bytes).contains("READY=1") { moldBecameReady(mold) }
        }
    }

    /// READY=1 from the mold: the starts waiting for it go on.
    func moldBecameReady(_ mold: Mold) {
        guard mold.state == .starting else { return }
        mold.state = .ready
        mold.readyAt = loop.now()
        for t in mold.timers { loop.cancel(t) }
        mold.timers.removeAll()
        givePriorityBack(mold)  // before it forks a worker, which would inherit its nice value
        logger.info(
            "mold ready after \(Units.formatElapsed(loop.now() - mold.startedAt))",
            metadata: ["pid": .stringConvertible(mold.pid), "release": .string(mold.spec.release)])
        resumeRollout(spec: mold.spec, failure: nil)
        scheduleReforkCheck()
        let waiting = moldBook.waiters.filter { $0.spec == mold.spec }
        moldBook.waiters.removeAll { $0.spec == mold.spec }
        for waiter in waiting where stillWants(waiter) {
            startWorker(slots[waiter.slot], role: waiter.role, reason: waiter.reason)
        }
        publishStatus()
    }

    /// Whether a waiting start is still wanted: its slot is still empty, or its rollout still
    /// runs on that release.
    private func stillWants(_ waiter: MoldWaiter) -> Bool {
        guard phase != .stopping, slots.indices.contains(waiter.slot) else { return false }
        let slot = slots[waiter.slot]
        switch waiter.role {
        case .current: return slot.current == nil && slot.replacement == nil && slot.spec == waiter.spec
        case .replacement: return rollout != nil && rolloutSpec == waiter.spec && slot.replacement == nil
        }
    }

    /// The starts waiting for the mold of `spec` fail (each as a failed start of its slot).
    private func failWaiters(_ spec: WorkerSpec, reason: String) {
        resumeRollout(spec: spec, failure: reason)
        let failed = moldBook.waiters.filter { $0.spec == spec }
        moldBook.waiters.removeAll { $0.spec == spec }
        for waiter in failed where stillWants(waiter) {
            startFailed(slot: slots[waiter.slot], role: waiter.role, worker: nil, reason: .spawnFailed(reason), uptime: nil)
        }
    }

    /// Its last output line, and the error above it when it failed on its own (`searchable`:
    /// its last lines that may hold it; `FailureOutput`, as for a worker).
    private func lastOutput(_ mold: Mold, searchable: Int = 0) -> String {
        FailureOutput.summary(mold.recentOutput.elements, searchable: searchable, earlier: mold.earlierError) ?? ""
    }

    // MARK: - Stop and exit

    /// Ends a mold now (SIGKILL); `replace` restarts one for its release once it is reaped,
    /// if that release still runs.
    func killMold(_ mold: Mold, replace: Bool) {
        guard mold.state != .exited else { return }
        mold.state = .stopping
        mold.replaceOnExit = replace
        mold.link = nil
        host.signal(pidfd: mold.pidfd, SIGKILL)
    }

    /// Retires a mold: its channel is closed (end of file: it exits 0), then the stop signal,
    /// SIGKILL after `stop.timeout`. Its workers are not touched.
    func retireMold(_ mold: Mold) {
        guard mold.state == .starting || mold.state == .ready else { return }
        logger.info("retiring mold", metadata: ["pid": .stringConvertible(mold.pid), "release": .string(mold.spec.release)])
        mold.state = .stopping
        mold.link = nil
        host.signal(pidfd: mold.pidfd, SIGTERM)
        let timeout = config.stop.timeout
        mold.timers.append(
            loop.schedule(after: timeout) { [unowned self, unowned mold] in
                guard mold.state != .exited else { return }
                self.host.signal(pidfd: mold.pidfd, SIGKILL)
            })
    }

    /// Retires every mold whose release no slot, rollout or waiting start uses any more (after
    /// an operation: the old release's mold once a deploy committed, the new one's after a
    /// failed deploy), and every mold once a reload put the app in exec mode.
    func retireUnusedMolds() {
        for mold in moldBook.molds where !moldNeeded(mold.spec) { retireMold(mold) }
    }

    /// Whether a mold for `spec` is wanted: in mold mode only (a spec does not say how its
    /// workers start; an operator audit: after a reload to exec mode the mold ran on, was
    /// restarted when it died, and its workers' spec kept it "needed").
    func moldNeeded(_ spec: WorkerSpec) -> Bool {
        phase != .stopping && moldMode
            && (slots.contains { $0.spec == spec } || rolloutSpec == spec || moldBook.waiters.contains { $0.spec == spec })
    }

    /// Stops every mold (shutdown).
    func stopMolds() {
        for t in moldBook.restartTimers.values { loop.cancel(t) }
        moldBook.restartTimers.removeAll()
        moldBook.waiters.removeAll()
        moldBook.pendingRollout = nil
        promotionFailed("baton is stopping")
        for mold in moldBook.molds { retireMold(mold) }
    }

    /// The molds' PSS from their last sample: memory of the service's that no worker's PSS
    /// counts (a forked worker's PSS holds only its share of the pages it shares).
    var moldsPSS: UInt64 { moldBook.molds.filter { $0.state != .exited }.compactMap { moldBook.memory[$0.pid]?.pss }.reduce(0, +) }

    /// What a deploy to `release` (nil: a release not named, a new one) needs for its mold
    /// before any worker moves: nothing outside mold mode or when that release's mold is
    /// starting or ready; else the serving mold's RSS, the application as loaded, every page
    /// it shares with its workers counted (a mold audit: a mold of 200 MiB planned as a 54.8 MiB
    /// surge).
    func newMoldBytes(release: String?) -> UInt64 {
        guard moldMode else { return 0 }
        // As bytes: an NFD twin of the serving release needs a mold of its own (a re-audit).
        if let release, moldBook.molds.contains(where: { $0.spec.releaseKey == PathKey(release) && ($0.state == .starting || $0.state == .ready) }) {
            return 0
        }
        return largestReadyMoldRSS ?? moldBook.lastReadyRSS ?? 0
    }

    /// The RSS of the largest ready mold, from the last sample; nil when none is measured.
    var largestReadyMoldRSS: UInt64? {
        moldBook.molds.filter { $0.state == .ready }.compactMap { moldBook.memory[$0.pid]?.rss }.max()
    }

    /// Pids of live molds (known children: not reaped as strays).
    var moldPIDs: [pid_t] { moldBook.molds.map(\.pid) + (moldBook.promoting.map { [$0.worker.pid] } ?? []) }

    /// The mold with `pid` exited (seen through SIGCHLD before its pidfd).
    func moldExitedNow(_ pid: pid_t) -> Bool {
        if moldBook.promoting?.worker.pid == pid {
            promotionFailed("it exited")
            return true
        }
        guard let mold = moldBook.molds.first(where: { $0.pid == pid }) else { return false }
        moldPidfdReadable(mold)
        return true
    }

    /// The mold's pidfd became readable: reap it; a mold that was ready is replaced (with
    /// backoff) while its release still runs; one that was starting fails its waiting starts.
    func moldPidfdReadable(_ mold: Mold) {
        // What is left of its own group goes; its workers have their own.
        guard mold.state != .exited, host.killGroupIfLeaderExited(pid: mold.pid, pidfd: mold.pidfd) else { return }
        let exit = collectExit(pid: mold.pid, pidfd: mold.pidfd) ?? .exited(-1)
        let previous = mold.state
        mold.state = .exited
        releaseChannels(mold)
        mold.link = nil
        moldBook.molds.removeAll { $0 === mold }
        let uptime = loop.now() - mold.startedAt
        let expected = previous == .stopping && !mold.replaceOnExit
        logger.log(
            level: expected ? .info : .warning, "mold exited (\(exit)) after \(Units.formatElapsed(uptime))",
            metadata: ["pid": .stringConvertible(mold.pid), "release": .string(mold.spec.release), "was": .string(previous.rawValue)])
        if previous == .starting {
            // A mold that failed on its own: the error above its last line is why (a re-audit:
            // only workers' lines looked for it).
            let own: Int = if case .exited(let code) = exit, code != 0 { .max } else { 0 }
            failWaiters(mold.spec, reason: "the mold of \(mold.spec.release) exited (\(exit)) before it was ready" + lastOutput(mold, searchable: own))
        } else if !expected, moldNeeded(mold.spec) {
            var backoff = moldBook.backoff[mold.spec.releaseKey] ?? CrashBackoff()
            let delay = backoff.workerFailed(uptime: mold.readyAt.map { _ in uptime })
            moldBook.backoff[mold.spec.releaseKey] = backoff
            logger.warning("mold of \(mold.spec.release) restarts in \(Units.formatDuration(delay)); its workers keep serving")
            scheduleMoldRestart(mold.spec, after: delay)
        }
        publishStatus()
        finishShutdownIfDone()
    }
}
