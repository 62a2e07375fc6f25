import BatonCore
import BatonSystem
import Glibc
import Logging

/// Deploys, reloads and rollbacks, and how they overlap (DESIGN.md's table):
/// a deploy during a deploy is refused unless `--wait`; a reload or SIGHUP
/// during a deploy queues behind it; a reload during a reload is coalesced
/// into one more pass; a deploy during a reload waits for it. Nothing is
/// dropped silently.
extension Supervisor {
    // MARK: - Requests

    /// SIGHUP, `baton reload`, systemd's ExecReload=.
    func requestReload(waiter: ControlConnection?, uid: uid_t? = nil) {
        if phase == .stopping {
            waiter?.finish(.failure("baton is stopping"))
            return
        }
        // Coalesce with a reload that has not started yet.
        if let queued = queue.first(where: { $0.kind == .reload }) {
            if let waiter {
                queued.waiters.append(waiter)
                waiter.send(.progress("a reload is already queued: this request joins it"))
            }
            logger.info("reload coalesced with the queued one")
            return
        }
        let op = Operation(kind: .reload, options: nil, uid: uid)
        if let waiter { op.waiters.append(waiter) }
        enqueue(op)
    }

    /// `baton deploy` / `baton rollback`.
    func requestDeploy(kind: Operation.Kind, options: DeployOptions, waiter: ControlConnection, uid: uid_t) {
        if phase == .stopping {
            waiter.finish(.failure("baton is stopping"))
            return
        }
        let target: Release
        do {
            target = try resolveTarget(kind: kind, options: options)
            _ = try makeSpec(config, release: target)
            if let t = options.timeout, Units.parseDuration(t) == nil {
                throw DaemonError("--timeout: expected a duration like \"10m\", got \"\(t)\"")
            }
            if let s = options.strategy, !["auto", "surge", "replace"].contains(s) {
                throw DaemonError("--strategy must be auto, surge or replace, got \"\(s)\"")
            }
            if let m = options.maxSurge, m < 1 || m > slots.count {
                throw DaemonError("--max-surge must be between 1 and \(slots.count), got \(m)")
            }
        } catch {
            logger.warning("\(kind.rawValue) refused: \(error)", metadata: ["peer_uid": .stringConvertible(uid)])
            waiter.finish(.failure("\(error)", code: 2))
            return
        }
        if options.dryRun == true {
            waiter.finish(.success("dry run: nothing changed", details: plan(kind: kind, target: target, options: options)))
            return
        }
        let busy = operation != nil || !queue.isEmpty || phase == .starting
        let deployAhead = ([operation].compactMap { $0 } + queue).contains { $0.kind.isDeploy }
        if busy && deployAhead && options.wait != true {
            let current = operation?.target?.directory ?? queue.first?.options?.release ?? "?"
            waiter.finish(.failure("deploy in progress (of \(current)): refused; use --wait to queue behind it"))
            return
        }
        let op = Operation(kind: kind, options: options, uid: uid)
        op.target = target
        op.waiters.append(waiter)
        if busy {
            let ahead = operation?.kind.rawValue ?? (phase == .starting ? "start-up" : queue.last?.kind.rawValue ?? "operation")
            waiter.send(.progress("waiting: a \(ahead) is in progress; this \(kind.rawValue) runs after it"))
        }
        enqueue(op)
    }

    /// `baton deploy --attach`: follow the operation in progress.
    func attach(_ waiter: ControlConnection) {
        guard let op = operation else {
            waiter.finish(.success("nothing in progress; last: \(history.last.map(Self.describe) ?? "no deploy yet")"))
            return
        }
        for line in op.progress { waiter.send(.progress(line)) }
        op.waiters.append(waiter)
    }

    static func describe(_ e: HistoryEntry) -> String {
        "\(e.kind) of \(e.release) \(e.outcome)" + (e.detail.map { ": \($0)" } ?? "")
    }

    private func resolveTarget(kind: Operation.Kind, options: DeployOptions) throws -> Release {
        switch kind {
        case .rollback:
            guard let previous = releaseState.previous else { throw DaemonError("no previous release to roll back to") }
            return previous
        case .deploy, .reload, .policy, .rollAhead:
            guard let directory = options.release, directory.hasPrefix("/") else {
                throw DaemonError("--release must be an absolute path, got \"\(options.release ?? "")\"")
            }
            var st = stat()
            guard stat(directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw DaemonError("release \(directory) is not a directory")
            }
            if pruning.contains(ReleaseRetention.normalize(directory)) {
                throw DaemonError("release \(directory) is being removed by retention ([deploy] keep_releases)")
            }
            if let command = options.command, command.isEmpty { throw DaemonError("--command must not be empty") }
            return Release(
                directory: directory, command: options.command ?? releaseState.current.command,
                environment: options.environment ?? [])
        }
    }

    /// The plan `--dry-run` prints.
    private func plan(kind: Operation.Kind, target: Release, options: DeployOptions) -> [String] {
        let (strategy, why) = chooseStrategy(options)
        let surge = min(options.maxSurge ?? config.deploy.maxSurge, slots.count)
        var lines = [
            "\(kind.rawValue): \(releaseState.current.directory) → \(target.directory)",
            "command: \((target.command ?? config.app.command).joined(separator: " "))",
            "strategy: \(strategy.rawValue) (\(why)), max surge \(strategy == .surge ? surge : 0), canary \(config.deploy.canary ? "slot \(slots.first?.index ?? 0) first" : "off")",
        ]
        for slot in slots {
            let pid = slot.current.map { String($0.pid) } ?? "-"
            lines.append("slot \(slot.index): pid \(pid) on \(slot.spec.release) → new worker on \(target.directory)")
        }
        return lines
    }

    /// surge or replace, and why: `auto` asks the pre-deploy check whether
    /// `max_surge` extra workers of the measured (or configured) footprint fit
    /// under every limit; replace when they do not.
    func chooseStrategy(_ options: DeployOptions?) -> (RollingRestart.Strategy, String) {
        let requested = options?.strategy.flatMap(DeployStrategy.init(rawValue:)) ?? config.deploy.strategy
        switch requested {
        case .surge: return (.surge, "requested")
        case .replace: return (.replace, "requested")
        case .auto:
            guard let (verdict, _) = try? preflight(release: options?.release, need: 0, strategy: .auto) else {
                return (.surge, "auto: memory unknown")
            }
            return (verdict.strategy, "auto: \(verdict.summary)")
        }
    }

    // MARK: - Running

    private func enqueue(_ op: Operation) {
        queue.append(op)
        runNextOperation()
    }

    /// Starts the next queued operation when nothing runs (also after start-up).
    func runNextOperation() {
        guard operation == nil, phase == .running, !queue.isEmpty else { return }
        let op = queue.removeFirst()
        operation = op
        op.startedAt = loop.now()
        op.startedAtWall = wallClockNow()
        op.previous = releaseState.current
        op.previousSpec = slots.first?.spec
        if op.kind.isDeploy {
            // Until it ends, the state directory says a deploy runs: a baton killed
            // mid-deploy finds it at start-up and records it as interrupted.
            do {
                try store?.beginDeploy(historyEntry(op, outcome: "in-progress", detail: nil))
            } catch {
                logger.error("cannot record the deploy in progress: \(error)")
            }
        }
        do {
            try begin(op)
        } catch {
            let message = "\(op.kind.rawValue) failed, nothing changed: \(error)"
            logger.error("\(message)")
            finishOperation(op, outcome: "failed", detail: "\(error)", reply: .failure(message))
        }
    }

    private func begin(_ op: Operation) throws {
        let spec: WorkerSpec
        var order = slots.map(\.index)
        if op.kind == .policy || op.kind == .rollAhead {
            op.target = releaseState.current
            spec = try makeSpec(config, release: releaseState.current)
            order = op.slots ?? order
            phase = .restarting
        } else if op.kind == .reload {
            let newConfig = try options.reloadConfig?() ?? config
            try checkReloadable(newConfig)
            spec = try makeSpec(newConfig, release: releaseState.current)
            op.target = releaseState.current
            for change in restartOnlyChanges(newConfig) {
                logger.warning("\(change) changed: takes effect only after a restart of baton (systemctl restart)")
                op.report("\(change) changed: needs a restart of baton, not a reload")
            }
            op.previousConfig = config
            config = Self.applying(newConfig, keepingRestartOnlyFrom: config)
            notifier.reloading(status: "reloading: rolling restart of \(slots.count) workers")
            phase = .reloading
        } else {
            spec = try makeSpec(config, release: op.target!)
            phase = .deploying
            // The most bloated workers go first: their memory comes back first.
            order = slotsByGrowth()
        }
        let (strategy, why) =
            op.kind == .policy || op.kind == .rollAhead
            ? chooseStrategy(DeployOptions(strategy: "auto", maxSurge: 1)) : chooseStrategy(op.options)
        let surge = min(op.options?.maxSurge ?? config.deploy.maxSurge, slots.count)
        if let timeout = (op.options?.timeout).flatMap(Units.parseDuration) ?? config.deploy.timeout {
            op.deadline = loop.schedule(after: timeout) { [unowned self, unowned op] in
                self.deadlinePassed(op, timeout)
            }
        }
        op.phase = .rollingOut
        rolloutSpec = spec
        op.report(
            "\(op.kind.rawValue)\(op.reason.map { " (\($0))" } ?? "") of \(op.target!.directory): \(order.count) of \(slots.count) workers, \(strategy.rawValue) (\(why))"
                + (strategy == .surge ? ", max surge \(surge)" : "") + (config.deploy.canary && op.kind.isDeploy ? ", canary slot \(order.first ?? 0)" : ""))
        logger.info("\(op.kind.rawValue) started", metadata: ["release": .string(op.target!.directory), "peer_uid": .stringConvertible(op.uid ?? 0)])
        extendTimeout()
        var machine = RollingRestart(
            slots: order, strategy: strategy, maxSurge: surge, canary: config.deploy.canary && op.kind.isDeploy)
        let actions = machine.start()
        rollout = machine
        publishStatus()
        perform(actions)
    }

    /// Worker count and app name need a restart of baton, not a reload.
    private func checkReloadable(_ newConfig: BatonConfig) throws {
        if newConfig.app.workers != config.app.workers {
            throw DaemonError("app.workers changed from \(config.app.workers) to \(newConfig.app.workers): restart baton to change the number of workers")
        }
        if newConfig.app.name != config.app.name { throw DaemonError("app.name changed: restart baton to rename the app") }
    }

    private func restartOnlyChanges(_ newConfig: BatonConfig) -> [String] {
        var changes: [String] = []
        if newConfig.listen != config.listen { changes.append("[listen]") }
        if newConfig.control != config.control { changes.append("[control]") }
        return changes
    }

    static func applying(_ newConfig: BatonConfig, keepingRestartOnlyFrom old: BatonConfig) -> BatonConfig {
        var merged = newConfig
        merged.listen = old.listen
        merged.control = old.control
        return merged
    }

    private func deadlinePassed(_ op: Operation, _ timeout: Duration) {
        guard operation === op, op.phase == .rollingOut else { return }
        let reason = "deadline of \(Units.formatDuration(timeout)) passed"
        logger.error("\(op.kind.rawValue): \(reason): aborting")
        op.failure = Operation.Failure(reason: reason, output: [], code: 4)
        rolloutEvent { $0.abort(reason: reason) }
    }

    /// Feeds an event to the rollout and performs what it says. Returns false
    /// when no rollout runs or it ignored the event.
    @discardableResult
    func rolloutEvent(_ event: (inout RollingRestart) -> [RollingRestart.Action]) -> Bool {
        guard var machine = rollout else { return false }
        let actions = event(&machine)
        rollout = machine
        perform(actions)
        return !actions.isEmpty
    }

    private func perform(_ actions: [RollingRestart.Action]) {
        for action in actions {
            switch action {
            case .startNew(let index):
                operation?.report("slot \(index): starting a new worker on \(rolloutSpec?.release ?? "?")")
                startWorker(slots[index], role: .replacement, reason: operation.map { $0.reason ?? $0.kind.rawValue } ?? "reload")
            case .drainOld(let index):
                drainOld(slots[index])
            case .abandonNew(let index):
                if let r = slots[index].replacement {
                    slots[index].replacement = nil
                    slots[index].draining.append(r)
                    r.stopReason = "abandoned"
                    stopWorker(r, reason: "abandoned")
                    kill(r)
                }
            case .finished(let outcome):
                rollout = nil
                rolloutFinished(outcome)
            }
        }
    }

    private func drainOld(_ slot: Slot) {
        let op = operation
        if let (replacement, old) = promoteReplacement(slot) {
            // The new worker serves; the old one drains.
            if let old {
                slot.draining.append(old)
                op?.report("slot \(slot.index): pid \(old.pid) → \(replacement.pid) ready after \(Self.bootTime(replacement)), draining \(old.pid)")
                stopWorker(old, reason: slot.lastRestartReason ?? "reload")
            }
        } else if let old = slot.current {
            slot.current = nil
            slot.draining.append(old)
            op?.report("slot \(slot.index): draining pid \(old.pid) before starting its replacement")
            stopWorker(old, reason: op?.kind.rawValue ?? "reload")
        }
        if slot.draining.isEmpty { rolloutEvent { $0.oldWorkerExited(slot: slot.index) } }
    }

    /// replace: the slot's new worker, started after its old one drained, is ready and becomes
    /// the one serving the slot (surge does this in `drainOld`).
    func promoteAfterDrain(_ slot: Slot, worker: Worker) {
        guard slot.replacement === worker, slot.current == nil else { return }
        _ = promoteReplacement(slot)
        operation?.report("slot \(slot.index): pid \(worker.pid) ready after \(Self.bootTime(worker))")
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
        slot.lastRestartReason = operation.map { $0.reason ?? $0.kind.rawValue } ?? "reload"
        restartsByReason[slot.lastRestartReason ?? "reload", default: 0] += 1
        return (replacement, old)
    }

    /// How long `worker` took to become ready, for progress lines.
    static func bootTime(_ worker: Worker) -> String {
        worker.readyAt.map { Units.formatElapsed($0 - worker.startedAt) } ?? "?"
    }

    /// An old worker finished draining.
    func drainedWorkerExited(_ worker: Worker, slot: Slot) {
        if let op = operation, worker.stopReason != "abandoned" {
            op.report("slot \(slot.index): pid \(worker.pid) drained in \(Units.formatElapsed(loop.now() - (worker.drainStartedAt ?? loop.now())))")
        }
        if slot.draining.isEmpty { rolloutEvent { $0.oldWorkerExited(slot: slot.index) } }
    }

    private func rolloutFinished(_ outcome: RollingRestart.Outcome) {
        guard let op = operation else { return }
        switch (op.phase, outcome) {
        case (.rollingOut, .succeeded):
            succeed(op)
        case (.rollingOut, .failed(let slot, let reason, let replaced)):
            if op.failure == nil {
                op.failure = Operation.Failure(reason: reason, output: lastFailureOutput, code: 1)
            }
            let what = slot >= 0 ? "new worker for slot \(slot) failed: \(reason)" : reason
            op.report("\(op.kind.rawValue) failed: \(what)")
            if let previous = op.previousConfig { config = previous }
            if replaced.isEmpty {
                finishFailed(op, rolledBack: "nothing changed: the old workers keep serving")
            } else {
                rollBack(op, slots: replaced)
            }
        case (.rollingBack, .succeeded):
            finishFailed(op, rolledBack: "rolled back: slots \(Self.list(op.rolledBackSlots)) are on \(op.previous?.directory ?? "?") again")
        case (.rollingBack, .failed(let slot, let reason, _)):
            degraded = true
            let table = slots.map { s in
                "slot \(s.index): " + (s.current.map { "pid \($0.pid) \($0.state.rawValue) on \($0.spec.release)" } ?? "no worker")
            }
            op.report("rollback failed: slot \(slot): \(reason)")
            logger.critical("rollback failed: app is degraded (slots run different releases)")
            finishOperation(
                op, outcome: "degraded", detail: "rollback failed: \(reason)",
                reply: .failure(
                    "\(op.kind.rawValue) failed (\(op.failure?.reason ?? "?")) and the rollback failed too (slot \(slot): \(reason)); degraded",
                    code: 1, details: table))
        default:
            break
        }
    }

    private func rollBack(_ op: Operation, slots indices: [Int]) {
        op.phase = .rollingBack
        op.rolledBackSlots = indices
        rolloutSpec = op.previousSpec
        op.report("rolling back slots \(Self.list(indices)) to \(op.previous?.directory ?? "?")")
        logger.warning("rolling back", metadata: ["slots": .string(Self.list(indices))])
        var machine = RollingRestart(slots: indices, strategy: .surge, maxSurge: 1, canary: false)
        let actions = machine.start()
        rollout = machine
        perform(actions)
    }

    private func succeed(_ op: Operation) {
        if op.kind == .policy, let slot = op.slots?.first { memoryPolicy.replacementFinished(slot: slot, now: loop.now()) }
        if op.kind == .rollAhead {
            finishRollAhead(op, replaced: true)
            return
        }
        if op.kind.isDeploy, let target = op.target {
            let previous = op.previous
            releaseState = ReleaseState(current: target, previous: previous == target ? releaseState.previous : previous)
            do {
                try store?.save(releaseState)
            } catch {
                logger.error("cannot persist the release state: \(error)")
            }
        }
        if op.kind == .reload { for slot in slots { if let spec = rolloutSpec { slot.spec = spec } } }
        degraded = false
        let elapsed = Units.formatElapsed(loop.now() - op.startedAt)
        let message = "\(op.kind.rawValue) finished: \(slots.count) workers on \(op.target?.directory ?? "?") in \(elapsed)"
        // Retention runs before the final reply so that its line reaches the CI log;
        // the folders are removed off the loop afterwards.
        if op.kind.isDeploy && config.deploy.releasesDirectory != nil { pruneReleases(report: op.report) }
        finishOperation(op, outcome: "succeeded", detail: nil, reply: .success(message))
    }

    private func finishFailed(_ op: Operation, rolledBack: String) {
        let failure = op.failure ?? Operation.Failure(reason: "unknown", output: [], code: 1)
        if op.kind == .policy, let slot = op.slots?.first { memoryPolicy.replacementFailed(slot: slot, now: loop.now()) }
        if op.kind == .rollAhead {
            finishRollAhead(op, replaced: false)
            return
        }
        let message = "\(op.kind.rawValue) of \(op.target?.directory ?? "?") failed: \(failure.reason); \(rolledBack)"
        finishOperation(
            op, outcome: failure.code == 4 ? "timed-out" : op.rolledBackSlots.isEmpty ? "failed" : "rolled-back", detail: failure.reason,
            reply: .failure(message, code: failure.code, details: failure.output))
    }

    /// Ends `op`: history, replies, READY=1 after a reload, next operation.
    func finishOperation(_ op: Operation, outcome: String, detail: String?, reply: ControlReply) {
        if let d = op.deadline { loop.cancel(d) }
        rolloutSpec = nil
        appendHistory(historyEntry(op, outcome: outcome, detail: detail))
        if op.kind.isDeploy { store?.finishDeploy() }
        if outcome == "succeeded" { logger.info("\(reply.message ?? "")") } else { logger.error("\(reply.error ?? "")") }
        op.finish(reply)
        operation = nil
        if phase == .reloading || phase == .deploying || phase == .restarting { phase = .running }
        // READY=1 ends RELOADING=1 even when the reload failed: old workers serve.
        if sentReady && op.kind == .reload { notifier.ready(status: summary) }
        lastStatusLine = ""
        publishStatus()
        runNextOperation()
    }

    /// `op`'s line in history.
    func historyEntry(_ op: Operation, outcome: String, detail: String?) -> HistoryEntry {
        HistoryEntry(
            kind: op.kind.rawValue, release: op.target?.directory ?? op.options?.release ?? "?",
            previousRelease: op.previous?.directory, outcome: outcome, detail: detail, startedAt: op.startedAtWall,
            duration: Self.seconds(loop.now() - op.startedAt), uid: op.uid)
    }

    /// Adds a line to history, in memory and in the state directory.
    func appendHistory(_ entry: HistoryEntry) {
        if entry.kind == Operation.Kind.deploy.rawValue { deploysByOutcome[entry.outcome, default: 0] += 1 }
        history.append(entry)
        if history.count > StateStore.historyLimit { history.removeFirst() }
        do {
            try store?.append(entry)
        } catch {
            logger.error("cannot write history: \(error)")
        }
    }

    /// A deploy the previous baton started and never finished (killed, crashed):
    /// it was never committed, so the workers start on the persisted release;
    /// history says so.
    func recordUnfinishedDeploy() {
        guard var entry = store?.takeUnfinishedDeploy() else { return }
        entry.outcome = "interrupted"
        entry.detail = "baton exited before it finished; restarted on \(releaseState.current.directory)"
        entry.duration = max(0, wallClockNow() - entry.startedAt)
        logger.warning(
            "the \(entry.kind) of \(entry.release) did not finish (baton exited during it): starting on \(releaseState.current.directory)")
        appendHistory(entry)
    }

    static func list(_ slots: [Int]) -> String { slots.map(String.init).joined(separator: ",") }
}
