import BatonCore
import BatonSystem
import Glibc
import Logging

/// Deploys, reloads and rollbacks: validating a request, starting and running the
/// rollout. Which operation runs and which waits is `OperationQueue`'s (BatonCore) to say
/// (docs/ARCHITECTURE.md, invariant 6); `Supervisor+Requests.swift` executes its actions.
extension Supervisor {
    // MARK: - Requests

    /// SIGHUP, `baton reload`, systemd's ExecReload=.
    func requestReload(waiter: (any OperationWaiter)?, uid: uid_t? = nil) {
        if phase == .stopping {
            waiter?.finish(.failure("baton is stopping"))
            return
        }
        let op = makeOperation(kind: .reload, options: nil, uid: uid)
        if let waiter { op.waiters.append(waiter) }
        submit(op)
    }

    /// `baton deploy` / `baton rollback`.
    func requestDeploy(kind: Operation.Kind, options: DeployOptions, waiter: any OperationWaiter, uid: uid_t) {
        if phase == .stopping {
            waiter.finish(.failure("baton is stopping"))
            return
        }
        let target: Release
        let timeout: Duration?
        let strategy: DeployStrategy?
        do {
            target = try resolveTarget(kind: kind, options: options)
            _ = try makeSpec(config, release: target)
            timeout = try options.timeout.map { t in
                guard let d = Units.parseDuration(t), d > .zero else { throw DaemonError(Units.timeoutProblem(t, option: "--timeout") ?? "--timeout: \(t)") }
                return d
            }
            strategy = try options.parsedStrategy()
            if let m = options.maxSurge, m < 1 || m > slots.count {
                throw DaemonError("--max-surge must be between 1 and \(slots.count), got \(m)")
            }
        } catch {
            logger.warning("\(kind.rawValue) refused: \(error)", metadata: ["peer_uid": .stringConvertible(uid)])
            recordRefusal(kind: kind, options: options, uid: uid, reason: "\(error)")
            waiter.finish(.failure("\(error)", code: 2))
            return
        }
        if options.dryRun == true {
            measureThen("a dry run") { [unowned self] in
                var lines = self.plan(kind: kind, target: target, options: options, strategy: strategy)
                let verdict = self.overlapVerdict(kind, wait: options.wait == true)
                lines.insert(verdict.line, at: 1)
                // The real request would be turned away: the dry run fails as it would (exit 1),
                // as a server-side dry run does, so that a CI gate on it does not pass.
                if let reason = verdict.turnedAway ?? self.releases.commitBlocker() {
                    waiter.finish(.failure("dry run: nothing changed; the \(kind.rawValue) would be refused: \(reason)", details: lines))
                } else {
                    waiter.finish(.success("dry run: nothing changed", details: lines))
                }
            }
            return
        }
        let op = makeOperation(kind: kind, options: options, uid: uid)
        op.target = target
        op.strategy = strategy
        op.waiters.append(waiter)
        // The client's deadline counts from its request, however long it waits in the queue.
        submit(op, wait: options.wait == true, timeout: timeout ?? config.deploy.timeout)
    }

    private func resolveTarget(kind: Operation.Kind, options: DeployOptions) throws -> Release {
        switch kind {
        case .rollback:
            guard let previous = releaseState.previous else {
                let unreadable = stateProblems.first { $0.hasPrefix("state unreadable") }
                throw DaemonError("no previous release to roll back to" + (unreadable.map { " (\($0))" } ?? ""))
            }
            // Up front, as for a deploy (a layout audit: a canary failed on chdir, exit 1).
            guard Filesystem.isDirectory(previous.directory) else {
                throw DaemonError("the previous release \(previous.directory) is not a directory (removed or renamed?): nothing to roll back to")
            }
            return previous
        case .deploy, .reload, .policy, .rollAhead:
            guard let directory = options.release, directory.hasPrefix("/") else {
                throw DaemonError("--release must be an absolute path, got \"\(options.release ?? "")\"")
            }
            // A newline or an escape in the path would split or colour every line that names it
            // (status, history, the deploy's own lines: a layout audit).
            guard !ControlProtocol.hasControls(directory) else {
                throw DaemonError(
                    "release \"\(ControlProtocol.withControlsShown(directory))\" has a control character in its path (shown as ?): rename the folder")
            }
            guard Filesystem.isDirectory(directory) else { throw DaemonError("release \(directory) is not a directory") }
            // A new release only: a reload or policy restart runs the current one, which may be
            // `app.directory` (a folder the config accepted as it is).
            if kind == .deploy, let problem = releaseDirectoryProblem(directory) { throw DaemonError("release \(directory) \(problem)") }
            if releases.isBeingPruned(directory) {
                throw DaemonError("release \(directory) is being removed by retention ([deploy] keep_releases)")
            }
            if let command = options.command, command.first?.isEmpty ?? true { throw DaemonError("--command must not be empty") }
            // Without --command, `[app] command` (as `baton deploy --help` says), as without --env
            // no environment: a release is what its deploy gave, not what the one before had.
            return Release(directory: directory, command: options.command, environment: options.environment ?? [])
        }
    }

    // MARK: - Running

    /// The overlap rules said `op` starts now.
    func startOperation(_ op: Operation) {
        // From its turn on: a reload's config read and the workers' memory read count in its
        // time, and a stop during either records a real start (a re-audit: history said
        // 1970-01-01 and baton's uptime as its duration).
        if op.startedAtWall == 0 {
            op.startedAt = loop.now()
            op.startedAtWall = wallClockNow()
        }
        if op.kind == .reload, op.loadedConfig == nil, let load = options.reloadConfig {
            loadThenStart(op, load)
            return
        }
        // Every operation plans its first step (and a deploy orders its slots) on the workers
        // measured now, off the loop (docs/ARCHITECTURE.md, invariant 9).
        if !op.measured {
            measureThen("the \(op.kind.noun)'s start") { [unowned self] in
                op.measured = true
                guard self.operation === op else { return }
                guard self.phase != .stopping else {
                    op.finish(.failure("baton is stopping: \(op.kind.rawValue) not finished"))
                    return
                }
                self.startOperation(op)
            }
            return
        }
        if operations.preemptsStartUp {
            // Slots not started yet get their worker from its rollout, on the new release.
            logger.warning("\(op.kind.rawValue) pre-empts the failing start-up")
            startQueue.removeAll()
        }
        // The memory was kept for the deploy's tooling until the deploy itself: it is the deploy's now.
        if op.kind.isDeploy { releaseReservation("a \(op.kind.rawValue) started") }
        op.previous = releaseState.current
        op.previousSpec = slots.first?.spec
        if op.kind.isDeploy { pinPreviousToTheFolderThatRan(op) }
        // Until it ends, the state directory says which operation runs: a baton killed during
        // it finds it at start-up and records it as interrupted. A state directory that cannot
        // even record a deploy could not commit it either: the deploy fails before it touches
        // a worker (the other operations go on).
        do {
            try releases.beginOperation(historyEntry(op, outcome: .inProgress, detail: nil))
        } catch let error as ReleaseBook.CommitBlocked {
            finishOperation(op, outcome: .failed, detail: "\(error)", reply: .failure("\(op.kind.rawValue) failed, nothing changed: \(error)"))
            return
        } catch {
            let message = "\(op.kind.rawValue) failed, nothing changed: cannot record it in the state directory (\(error)), so it could not be committed"
            finishOperation(op, outcome: .failed, detail: "\(error)", reply: .failure(message))
            return
        }
        do {
            try begin(op)
        } catch {
            // A reload's config was applied before a check refused the start (a reload audit:
            // `reload failed, nothing changed`, and the next deploy started workers on it).
            restorePreviousConfig(op)
            // Logged once, by finishOperation (a systemd/CI audit saw this line twice).
            let message = "\(op.kind.rawValue) failed, nothing changed: \(error)"
            finishOperation(op, outcome: .failed, detail: "\(error)", reply: .failure(message))
        }
    }

    private func begin(_ op: Operation) throws {
        let spec: WorkerSpec
        var order = slots.map(\.index)
        if op.kind == .policy || op.kind == .rollAhead {
            op.target = releaseState.current
            spec = try makeSpec(config, release: releaseState.current)
            order = op.slots ?? order
        } else if op.kind == .reload {
            let newConfig = try op.loadedConfig?.get() ?? config
            try checkReloadable(newConfig)
            spec = try makeSpec(newConfig, release: releaseState.current)
            op.target = releaseState.current
            op.previousRestartOnly = (restartNeeded, reloadedListen)
            reportRestartOnlyChanges(newConfig, op)
            op.previousConfig = config
            config = Self.applying(newConfig, keepingRestartOnlyFrom: config)
            scheduleReforkCheck()
            notifier.reloading(status: "reloading: rolling restart of \(slots.count) workers")
        } else {
            // A rollback goes to the release before the one serving when it *runs*: one queued
            // (--wait) behind a deploy undoes that deploy, not the one before it.
            if op.kind == .rollback, let previous = releaseState.previous { op.target = previous }
            spec = try makeSpec(config, release: op.target!)
            if moldMode, let problem = newMoldProblem(release: op.target!.directory) {
                throw DaemonError("its mold does not fit: \(problem); free memory first (baton preflight --roll-ahead)")
            }
        }
        // The most bloated first (their memory comes back first): a deploy's, rollback's or reload's canary.
        if op.kind.hasCanary { order = slotsByGrowth() }
        // A limits re-audit (7 of 7): with idle control clients holding descriptors, a replace
        // drained a worker, could not start its successor nor the old release again, and left
        // the slot empty (degraded). A start that cannot happen even after a drain changes nothing.
        if let room = descriptorRoom(), !room.canReplace {
            throw DaemonError(
                "baton's descriptors leave no room to start a worker (\(room.summary); a start needs \(room.startNeed) free, "
                    + "a drained worker gives back \(DescriptorRoom.perWorker)): try again once control clients have closed, or raise LimitNOFILE= or ulimit -n"
            )
        }
        // The restart policy and roll-ahead replace one slot: surge when one worker fits.
        let replacesOne = op.kind == .policy || op.kind == .rollAhead
        let options = replacesOne ? DeployOptions(maxSurge: op.kind == .policy ? op.recycleWidth : 1) : op.options
        // Recycles follow `[deploy] strategy` (replace: no extra worker, as gunicorn's max-requests).
        let strategy = op.kind == .policy ? config.deploy.strategy : replacesOne ? .auto : op.strategy
        let planner = rolloutPlanner(options, strategy: strategy)
        var planned = options ?? DeployOptions()
        planned.release = op.target?.directory
        let step = firstStep(planned, strategy: strategy, for: op)
        if op.deadline == nil, let timeout = (op.options?.timeout).flatMap(Units.parseDuration) ?? config.deploy.timeout {
            op.deadlineAt = (loop.now() + timeout, timeout)
            op.deadline = loop.schedule(after: timeout) { [unowned self, unowned op] in
                self.deadlinePassed(op, timeout)
            }
        }
        op.phase = .rollingOut
        rolloutSpec = spec
        op.report(
            "\(op.kind.rawValue)\(op.reason.map { " (\($0.rawValue))" } ?? "") of \(op.target!.directory): \(order.count) of \(slots.count) workers, \(Self.describe(step)) (\(step.reason))"
                + (config.deploy.canary && op.kind.hasCanary ? ", canary slot \(order.first ?? 0)" : ""))
        logger.info(
            "\(op.kind.rawValue) started",
            metadata: [
                "release": .string(op.target!.directory), "peer_uid": .string(op.uid.map(String.init) ?? "-"), "strategy": .string(step.strategy.rawValue),
            ])
        extendTimeout()
        var machine = RollingRestart(
            slots: order, strategy: step.strategy, maxSurge: step.width, maxUnavailable: step.width,
            canary: config.deploy.canary && op.kind.hasCanary, awaitsStability: config.deploy.stabilityWindow > .zero)
        rolloutPlanner = planner
        let actions = machine.start()
        rollout = machine
        publishStatus()
        performAfterMold(actions)
    }

    /// Worker count and app name need a restart of baton, not a reload.
    func checkReloadable(_ newConfig: BatonConfig) throws {
        if newConfig.app.workers != config.app.workers {
            throw DaemonError("app.workers changed from \(config.app.workers) to \(newConfig.app.workers): restart baton to change the number of workers")
        }
        if newConfig.app.name != config.app.name { throw DaemonError(renameProblem(newConfig)) }
    }

    func deadlinePassed(_ op: Operation, _ timeout: Duration) {
        guard operation === op else { return }
        let reason = "deadline of \(Units.formatDuration(timeout)) passed"
        if op.phase == .queued {
            // Its turn came, but it waited for its workers' memory read (or a reload for its
            // config): no worker was touched yet.
            let message = "\(op.kind.rawValue) of \(op.target?.directory ?? "?"): \(reason) before it started: nothing changed"
            // timed-out, as a deadline that passes later: `deploy --attach` exits 4 for it too.
            finishOperation(op, outcome: .timedOut, detail: "\(reason) before it started", reply: .failure(message, code: 4))
            return
        }
        guard op.phase == .rollingOut else { return }
        // Finished in time, its commit being written (off the loop): the commit decides, and a
        // line saying "aborting" would be false (a chaos audit saw it, then "deploy finished").
        if committingOperation === op || rollout?.isFinished == true { return }
        // Every slot's new worker served and passed its window before the deadline: only old
        // workers' drains are left, bounded by `[stop] timeout`. A proven release is not rolled
        // back for them. Proven after it (the timer ran late) counts as late, as a rollout that
        // finished after it: a re-audit saw this line, then a rollback (1 of 21).
        if op.servedBeforeDeadline, rollout?.onlyDrainsLeft == true {
            op.report(
                "\(reason) while only old workers drain (every slot's new worker serves): the \(op.kind.rawValue) ends when they are gone, at most [stop] timeout (\(Units.formatDuration(config.stop.timeout)))"
            )
            return
        }
        logger.error("\(op.kind.rawValue): \(reason): aborting")
        op.failure = Operation.Failure(reason: reason, output: [], code: 4)
        rolloutEvent { $0.abort(reason: reason) }
    }

    /// Feeds an event to the rollout and performs what it says. Returns false
    /// when no rollout runs or it ignored the event.
    @discardableResult
    func rolloutEvent(at moment: Duration? = nil, _ event: (inout RollingRestart) -> [RollingRestart.Action]) -> Bool {
        guard var machine = rollout else { return false }
        // A planned rollout starts nothing while the event is applied: the event may take a slot
        // out of flight, and the width planned before it would then let one slot too many start.
        if rolloutPlanner != nil { machine.replan(strategy: machine.stepStrategy, width: 0) }
        let handled = event(&machine)
        rollout = machine
        // `moment`: when the event happened, for a timer that ran late (a stability window that
        // ended before the deadline while baton was stopped: a pause audit saw a release proven
        // 3 s before its deadline rolled back, 2 of 2, when baton ran again after it).
        if let op = operation, op.phase == .rollingOut, !op.servedBeforeDeadline,
            machine.onlyDrainsLeft || machine.result == .succeeded,
            op.deadlineAt.map({ (moment ?? loop.now()) < $0.at }) ?? true
        {
            op.servedBeforeDeadline = true
        }
        var actions = handled
        if !handled.contains(where: { if case .finished = $0 { true } else { false } }) {
            actions += replanRollout(&machine)
            rollout = machine
        }
        perform(actions)
        if operation?.kind == .policy { pumpRecycling() }
        return !handled.isEmpty
    }

    func perform(_ actions: [RollingRestart.Action]) {
        // The actions belong to the rollout that returned them. One of them may end it, or
        // turn it into a rollback, before the rest run (a start that fails at once ends the
        // operation inside `startWorker`): the rest are then stale, and a stale start would
        // spawn a worker of the current release as a new one beside the serving one.
        let owner = operation.map { RolloutOwner(number: $0.number, phase: $0.phase) }
        for action in actions {
            guard operation.map({ RolloutOwner(number: $0.number, phase: $0.phase) }) == owner else {
                logger.debug("rollout ended while its actions ran: \(action) and the ones after it dropped")
                return
            }
            switch action {
            case .startNew(let index):
                operation?.report("slot \(index): starting a new worker on \(rolloutSpec?.release ?? "?")")
                startWorker(slots[index], role: .replacement, reason: RestartCause(operation?.restartReason(slot: index) ?? .reload))
            case .drainOld(let index):
                drainOld(slots[index])
            case .promote(let index):
                promote(slots[index])
            case .abandonNew(let index):
                if let r = slots[index].replacement {
                    slots[index].replacement = nil
                    slots[index].draining.append(r)
                    r.stopReason = .abandoned
                    // One that is ready (held while a canary settles) serves: it drains.
                    let serving = r.state == .ready
                    stopWorker(r, reason: .abandoned)
                    if !serving { kill(r) }
                }
            case .finished(let outcome):
                rollout = nil
                rolloutPlanner = nil
                rolloutFinished(outcome)
            }
        }
    }

    /// replace: the slot's serving worker drains before its new one starts.
    private func drainOld(_ slot: Slot) {
        if let old = slot.current {
            slot.current = nil
            slot.draining.append(old)
            operation?.report("slot \(slot.index): draining pid \(old.pid) before starting its replacement")
            stopWorker(old, reason: .restart(operation?.restartReason(slot: slot.index) ?? .reload))
        }
        if slot.draining.isEmpty { rolloutEvent { $0.oldWorkerExited(slot: slot.index) } }
    }

    /// The slot's ready new worker serves from now on; the worker it displaces (surge) drains.
    /// A surge slot that had no old worker (it crashed) tells the rollout at once.
    private func promote(_ slot: Slot) {
        guard let (replacement, old) = promoteReplacement(slot) else { return }
        if let old {
            slot.draining.append(old)
            operation?.report("slot \(slot.index): pid \(old.pid) → \(replacement.pid) ready after \(Self.bootTime(replacement)), draining \(old.pid)")
            stopWorker(old, reason: .restart(slot.lastRestartReason?.reason ?? .reload))
        } else {
            operation?.report("slot \(slot.index): pid \(replacement.pid) ready after \(Self.bootTime(replacement))")
        }
        if let held = replacement.heldStableLine {
            replacement.heldStableLine = nil
            operation?.report(held)
        }
        // Ignored by the rollout unless the slot waits for an old worker (surge).
        if slot.draining.isEmpty { rolloutEvent { $0.oldWorkerExited(slot: slot.index) } }
    }

    /// The slot's replacement serves from now on, counted as a restart for the operation's
    /// reason; returns it and the worker it displaced (nil after a replace-strategy drain),
    /// or nil when the slot has no replacement.
    private func promoteReplacement(_ slot: Slot) -> (new: Worker, old: Worker?)? {
        guard let replacement = slot.replacement else { return nil }
        let old = slot.current
        slot.replacement = nil
        slot.current = replacement
        slot.spec = replacement.spec
        let reason = operation?.restartReason(slot: slot.index) ?? .reload
        // Only a replacement that serves counts as a restart (a failed one changed nothing).
        slot.life.promoted(reason: reason)
        restartsByReason[reason, default: 0] += 1
        return (replacement, old)
    }

    /// How long `worker` took to become ready, for progress lines.
    static func bootTime(_ worker: Worker) -> String {
        worker.bootTime.map { Units.formatElapsed($0) } ?? "?"
    }

    static func list(_ slots: [Int]) -> String { slots.map(String.init).joined(separator: ",") }
}

/// The operation and phase whose rollout returned a batch of actions (`perform`).
private struct RolloutOwner: Equatable {
    let number: Int
    let phase: Operation.Phase
}
