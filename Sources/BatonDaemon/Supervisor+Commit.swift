import BatonCore
import BatonSystem
import Glibc
import Logging

/// How an operation ends, and what makes its success true: each new worker stays up through
/// its stability window, the new release is persisted before it counts as committed, and a
/// client's deadline counts from its request (queued or not).
extension Supervisor {
    // MARK: - Outcome

    /// The rollout ended: commit, roll back, or report the failure.
    func rolloutFinished(_ outcome: RollingRestart.Outcome) {
        guard let op = operation else { return }
        switch (op.phase, outcome) {
        case (.rollingOut, .succeeded):
            // Finished after its deadline, whose timer had not run yet (a CI audit: the loop or the
            // host stalled 3.4 s past both, and the deploy exited 0 after its --timeout): it
            // fails for the deadline, as it would had the timer run first.
            // Not when every new worker served before it, only drains left (a drain audit: a
            // 5 s --timeout rolled a healthy release back while old workers finished 20 s requests).
            if let deadline = op.deadlineAt, loop.now() >= deadline.at, !op.servedBeforeDeadline {
                let reason = "deadline of \(Units.formatDuration(deadline.after)) passed"
                logger.error("\(op.kind.rawValue): \(reason) before it finished: rolling back")
                op.failure = Operation.Failure(reason: reason, output: [], code: 4)
                // Every slot of the rollout serves the new release now.
                rolloutFinished(.failed(slot: -1, reason: reason, replaced: op.slots ?? slots.map(\.index)))
                return
            }
            succeed(op)
        case (.rollingOut, .failed(let slot, let reason, let replaced)):
            if op.failure == nil {
                op.failure = Operation.Failure(reason: reason, output: lastFailureOutput, code: 1)
            }
            let what = slot >= 0 ? "new worker for slot \(slot) failed: \(reason)" : reason
            op.report("\(op.kind.rawValue) failed: \(what)")
            // Its new workers drained after it ended (a canary that failed, `nothing changed`) take
            // what escaped from them along too (a re-audit 2: their daemons answered 11 of 30).
            if op.kind != .policy {
                for w in slots.flatMap(\.workers) where w.startedByOperation == op.number { w.ranFailedRelease = true }
            }
            restorePreviousConfig(op)
            // A recycle's slots that got their new worker keep it: it runs the same release.
            if replaced.isEmpty || op.kind == .policy {
                finishFailed(
                    op,
                    // "Nothing changed" is not so where the OOM killer took a worker meanwhile.
                    rolledBack: !replaced.isEmpty
                        ? keptNewWorkers(op, replaced)
                        : op.oomKills.isEmpty ? "nothing changed: the old workers keep serving" : "the old workers keep serving")
            } else {
                rollBack(op, slots: replaced)
            }
        case (.rollingBack, .succeeded):
            let slots = Self.list(op.rolledBackSlots)
            let which = op.rolledBackSlots.count == 1 ? "slot \(slots) is" : "slots \(slots) are"
            finishFailed(op, rolledBack: "rolled back: \(which) on \(op.previous?.directory ?? "?") again")
        case (.rollingBack, .failed(let slot, let reason, _)):
            degraded = true
            let table = slots.map { s in
                "slot \(s.index): " + (s.current.map { "pid \($0.pid) \($0.state.rawValue) on \($0.spec.release)" } ?? "no worker")
            }
            op.report("rollback failed: slot \(slot): \(reason)")
            logger.critical("rollback failed: app is degraded (slots run different releases)")
            finishOperation(
                op, outcome: .degraded, detail: "rollback failed: \(reason)",
                reply: .failure(
                    "\(op.kind.rawValue) failed (\(op.failure?.reason ?? "?")) and the rollback failed too (slot \(slot): \(reason)); degraded",
                    code: 1, details: table))
        default:
            break
        }
    }

    /// "slots 1,2 keep their new workers (same release)", and of a slot whose new worker is the
    /// one that died (a soak audit: said to be kept while the slot had no worker), that it starts one.
    private func keptNewWorkers(_ op: Operation, _ replaced: [Int]) -> String {
        let kept = replaced.filter { slots[$0].current?.startedByOperation == op.number }
        let lost = replaced.filter { !kept.contains($0) }
        return [
            kept.isEmpty ? nil : "slots \(Self.list(kept)) keep their new workers (same release)",
            lost.isEmpty ? nil : lost.map { "slot \($0)'s new worker exited: one starts again" }.joined(separator: "; "),
        ].compactMap { $0 }.joined(separator: "; ")
    }

    func rollBack(_ op: Operation, slots indices: [Int]) {
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
        if op.kind == .rollAhead {
            finishRollAhead(op, replaced: true)
            return
        }
        if op.kind.isDeploy, let target = op.target {
            // A release folder removed while its workers started (they run on in the deleted
            // folder) is not committed: a restarted baton or the next respawn could not start
            // it (a systemd/CI audit found it committed, release.json naming a folder gone).
            guard Filesystem.isDirectory(target.directory) else {
                notCommitted(op, reason: "the release folder \(target.directory) is gone: not committed")
                return
            }
            let previous = op.previous
            committingOperation = op
            // A redeploy of the folder already current keeps the previous release, however the
            // folder is spelled (`B/`, `./B`, a link to B: a layout audit saw the real previous
            // release lost to a trailing slash, 3 of 3).
            let redeploy = previous.map { Self.sameRelease($0, target) } ?? false
            let state = ReleaseState(current: target, previous: redeploy ? releaseState.previous : previous, committedBy: op.startedAtWall)
            releases.commit(state, on: loop) {
                [unowned self] error in
                self.committingOperation = nil
                // Stopped meanwhile: the stop left this operation to its commit.
                if self.phase == .stopping {
                    self.commitEndedAtStop(op, target: target, error: error)
                    return
                }
                guard self.operation === op else { return }
                if let error {
                    self.notCommitted(op, reason: "cannot persist the release in the state directory (\(error)): not committed")
                } else {
                    self.committed(op)
                }
            }
            return
        }
        committed(op)
    }

    /// A deploy's commit ended after baton began to stop (the stop waited for it): the release
    /// was persisted or not, and the client and history say which (a re-audit: SIGTERM during
    /// a slow commit answered "not finished" and recorded interrupted, and the restarted
    /// baton came up on the new release).
    private func commitEndedAtStop(_ op: Operation, target: Release, error: (any Error)?) {
        if let error {
            let reason = "baton stopped; the release could not be persisted (\(error)): not committed"
            releases.append(historyEntry(op, outcome: .interrupted, detail: reason))
            op.finish(.failure("baton is stopping: \(op.kind.rawValue) of \(target.directory) not committed (\(error))"))
        } else {
            releases.recordDeployed(target)
            releases.append(historyEntry(op, outcome: .succeeded, detail: "committed as baton stopped"))
            op.finish(
                .success(
                    "\(op.kind.rawValue) finished: \(target.directory) is persisted as the current release; baton is stopping, and starts on it again"))
        }
        releases.finishOperation()
        finishShutdownIfDone()
    }

    /// `op` succeeded (a deploy's release persisted and current): what follows, then the reply.
    private func committed(_ op: Operation) {
        if op.kind == .reload {
            for slot in slots { if let spec = rolloutSpec { slot.spec = spec } }
            // The restart policy follows the reloaded [memory] and [rolling] (its per-slot state is kept).
            memoryMonitor.policy.reconfigure(.init(config: config, hostname: Self.hostname()))
            requestRecycler = Self.requestRecycler(config)
            saidNoRequestCounts = false
            recycling.reconfigure(concurrency: config.rolling.recycleConcurrency, spacing: config.rolling.recycleSpacing)
        }
        degraded = false
        // A hostile-app audit: a deploy said "finished" while 5 strays of the old release (a
        // worker that double-forked a daemon keeping the socket) still answered 145 of 200 requests.
        op.strays = escapedChildren().sorted()
        if op.kind.isDeploy, let mixed = Self.mixedFolders(servingFolders().groups) {
            op.mixedFolders = mixed
            logger.warning("\(op.kind.rawValue) of \(op.target?.directory ?? "?"): \(mixed)")
        }
        let elapsed = Units.formatElapsed(loop.now() - op.startedAt)
        let message =
            "\(op.kind.rawValue) finished: \(slots.count) workers on \(op.target?.directory ?? "?") in \(elapsed)" + op.endSuffix
        if op.kind.isDeploy, let target = op.target {
            releases.recordDeployed(target)
            // Each folder its workers started in is deployed too: one a link flipped mid-deploy
            // left some on was listed `not-deployed` and never pruned (a re-audit 3).
            for folder in servingFolders().groups.keys { releases.recordDeployed(Release(directory: folder.path)) }
        }
        // Retention runs before the final reply so that its line reaches the CI log;
        // the folders are removed off the loop afterwards.
        if op.kind.isDeploy && config.deploy.releasesDirectory != nil { pruneReleases(report: op.report) }
        finishOperation(op, outcome: .succeeded, detail: op.endNotes, reply: .success(message))
    }

    private func finishFailed(_ op: Operation, rolledBack: String) {
        let failure = op.failure ?? Operation.Failure(reason: "unknown", output: [], code: 1)
        if op.kind == .rollAhead {
            finishRollAhead(op, replaced: false)
            return
        }
        let message = "\(op.kind.rawValue) of \(op.target?.directory ?? "?") failed: \(failure.reason); \(rolledBack)" + op.endSuffix
        finishOperation(
            op, outcome: failure.code == 4 ? .timedOut : op.rolledBackSlots.isEmpty ? .failed : .rolledBack,
            detail: failure.reason + op.endSuffix, reply: .failure(message, code: failure.code, details: failure.output))
    }

    /// `op`'s line in history. A policy restart or roll-ahead names its slots and why each
    /// (a policy audit: its lines said neither), before any failure; a roll-ahead every slot it
    /// restarted (a headline audit: only the last of 2 or 3).
    func historyEntry(_ op: Operation, outcome: OperationOutcome, detail: String?) -> HistoryEntry {
        let restarted = Set(op.rolledAhead + (op.slots ?? []))
        let slots =
            op.kind == .policy || op.kind == .rollAhead
            ? restarted.sorted().map { "slot \($0): \((op.slotReasons[$0] ?? op.restartReason).rawValue)" }.joined(separator: ", ") : ""
        // A release that succeeded through a link (or spelled otherwise): the folder it runs in.
        let release = op.releaseDirectory ?? releaseState.current.directory
        let served = servingFolders().groups.keys
        let folder =
            op.kind.isDeploy && outcome == .succeeded && served.count == 1 && served.first != PathKey(release) ? served.first?.path : nil
        return HistoryEntry(
            // A reload or policy restart has no target of its own: it runs the current release.
            kind: op.kind, release: release,
            previousRelease: op.previous?.directory, outcome: outcome,
            detail: slots.isEmpty ? detail : detail.map { "\(slots); \($0)" } ?? slots, startedAt: op.startedAtWall,
            duration: Self.seconds(loop.now() - op.startedAt), uid: op.uid, folder: folder)
    }

    /// Ends `op`: history, replies, READY=1 after a reload, next operation.
    func finishOperation(_ op: Operation, outcome: OperationOutcome, detail: String?, reply: ControlReply) {
        if let d = op.deadline { loop.cancel(d) }
        // Every way a policy restart ends frees the policy and the recycling budget: it never stays waiting.
        if op.kind == .policy { for slot in op.slots ?? [] { recycleEnded(slot: slot, succeeded: outcome == .succeeded) } }
        rolloutSpec = nil
        releases.append(historyEntry(op, outcome: outcome, detail: detail))
        releases.finishOperation()
        if outcome == .succeeded { logger.info("\(reply.message ?? "")") } else { logger.error("\(reply.error ?? "")") }
        op.finish(reply)
        // Out of the table first: `operation` is nil from here, so slots can be refilled
        // before the next operation (if any) takes over.
        operationTable[op.number] = nil
        refillEmptySlots()
        retireUnusedMolds()
        // After one that pre-empted a failing start-up, the start-up goes on until every slot serves.
        let next = operations.finished(op.number)
        // READY=1 ends RELOADING=1 even when the reload failed: old workers serve.
        if sentReady && op.kind == .reload { notifier.ready(status: summary) }
        if !sentReady { checkAllReady() }
        lastStatusLine = ""
        publishStatus()
        performOperations(next)
        reportFailingStartUp()
        pumpRecycling()
    }

    /// A release deployed through a link (Capistrano's `current`) flipped since its workers
    /// started names another folder now: the release before a deploy or rollback is the folder
    /// every serving worker started in, for its rollback, its record as previous and the
    /// redeploy check. An operator-release audit: a deploy of r3 after the link moved from r5 to
    /// r3 was taken for a redeploy (r5 lost, `rollback` went to r3 again, exit 0), every deploy
    /// through the link kept the same previous release, and a failed deploy through the link
    /// rolled its slots back onto the failing release the link named by then. A re-audit: a
    /// link that still named the folder at the deploy was kept as previous, and a rollback
    /// after the link was flipped to a fresh upload went there; so is a path through `..`,
    /// whose folder retention may remove. The folder itself is recorded whenever the path is
    /// another spelling of it.
    /// Workers left on two folders (the link flipped while a deploy ran: a re-audit 2 saw a
    /// rollback go to a fresh upload then) give the folder most of them run, slot 0's on a tie.
    func pinPreviousToTheFolderThatRan(_ op: Operation) {
        let (groups, everySlot) = servingFolders()
        // Most slots; on a tie, the folder of the lowest slot (each group lists its slots in order).
        let most = groups.max { a, b in a.value.count != b.value.count ? a.value.count < b.value.count : a.value[0] > b.value[0] }
        guard everySlot, let ran = most?.key, let previous = op.previous, PathKey(previous.directory) != ran else { return }
        let named = Self.resolved(previous.directory)
        if PathKey(named) != ran {
            logger.info(
                "\(previous.directory) names \(named) now, but \(groups.count > 1 ? "the workers run \(groups.count) folders, most of them (slot 0's on a tie)" : "the workers run") \(ran.path): that is the release before this \(op.kind.rawValue)"
            )
        }
        op.previous?.directory = ran.path
        if op.previousSpec.map({ PathKey($0.directory) != ran }) ?? false { op.previousSpec?.directory = ran.path }
    }

    /// The folders the serving workers started in (each resolved as it started), with the slots
    /// in each, in order; `everySlot`: every slot has a serving worker whose folder is known.
    /// One derivation for the previous release's pin, the split note, history's `folder`, the
    /// folders recorded as deployed and `baton releases`' current mark.
    func servingFolders() -> (groups: [PathKey: [Int]], everySlot: Bool) {
        let started = slots.compactMap { s in s.current?.folder.map { (folder: PathKey($0), slot: s.index) } }
        return (Dictionary(grouping: started, by: \.folder).mapValues { $0.map(\.slot) }, started.count == slots.count)
    }

    /// The folders the serving workers started in, when more than one: a release deployed
    /// through a link flipped while it ran (a releases audit: `deploy finished`, exit 0, with 3
    /// workers on D and 1 on E, and nothing said so).
    static func mixedFolders(_ groups: [PathKey: [Int]]) -> String? {
        guard groups.count > 1 else { return nil }
        let parts = groups.sorted { $0.value[0] < $1.value[0] }.map { folder, slots in
            "\(folder.path): slot\(slots.count == 1 ? "" : "s") \(list(slots))"
        }
        return
            "its workers run \(groups.count) folders (\(parts.joined(separator: "; "))): a link in its path was flipped while it ran; deploy the folder itself to run one"
    }

    /// Whether `a` and `b` run the same folder (symlinks resolved now) the same way.
    static func sameRelease(_ a: Release, _ b: Release) -> Bool {
        // Compared as bytes: `café` in NFC and in NFD are two folders (a names audit: a deploy of
        // one was taken for a redeploy of the other, and rollback skipped it).
        a.command?.map { Array($0.utf8) } == b.command?.map { Array($0.utf8) } && a.environment == b.environment
            && PathKey(resolved(a.directory)) == PathKey(resolved(b.directory))
    }

    // MARK: - Stability window

    /// A new worker of the rollout became ready: once it has stayed up `[deploy]
    /// stability_window`, the rollout hears that its slot is stable. The timer dies with the
    /// worker (its exit before then fails the rollout instead). A worker baton is stopping by
    /// then (its watchdog, a liveness check) is not stable however slowly it exits: its exit
    /// fails the rollout.
    func watchStability(_ worker: Worker) {
        guard let op = operation, op.phase == .rollingOut, rollout?.awaitsStability == true else { return }
        let window = config.deploy.stabilityWindow
        // From when it sent READY=1, not when baton read it (a crash audit: baton stopped 0.1 s
        // into a deploy with a 3 s deadline and resumed at 10 s; the window, counted from the
        // read, ended after the deadline, and a release proven at 0.8 s was rolled back, exit 4).
        let late = worker.readyReadLate ?? .zero
        let due = loop.now() - late + window
        let stable = { [unowned self, unowned worker, weak op] in
            guard let op, self.operation === op, op.phase == .rollingOut, worker.isReadyAndNotStopping else { return }
            self.logger.info(
                "worker stayed up \(Units.formatDuration(window)) after ready: stable",
                metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
            let line = "slot \(worker.slot): pid \(worker.pid) stable for \(Units.formatDuration(window))"
            // Said in the order it means: a worker still waiting for its promotion is stable
            // once it serves (the CLI printed "stable" before "→ … ready after …, draining").
            if self.slots[worker.slot].replacement === worker { worker.heldStableLine = line } else { op.report(line) }
            self.rolloutEvent(at: due) { $0.workerStable(slot: worker.slot) }
        }
        // Up that long already: stable now, before the timers due meanwhile (a deadline) run;
        // unless it exited meanwhile (a re-audit: `stable for 2s` for a worker that crashed 1 s
        // after READY=1 while baton was stopped): its exit, read next, fails the rollout.
        if late >= window {
            if !CBatonLinuxShim.hasExited(pidfd: worker.pidfd) { stable() }
        } else {
            worker.timers.append(loop.schedule(after: due - loop.now(), stable))
        }
    }

    // MARK: - Persistence

    /// A deploy or rollback whose every slot serves the new release but whose release could
    /// not be persisted, or whose folder is gone: it is not committed (a restarted baton would
    /// come back on the old release), so it fails and every slot goes back to the previous
    /// release.
    func notCommitted(_ op: Operation, reason: String) {
        logger.error("\(op.kind.rawValue) of \(op.target?.directory ?? "?"): \(reason)")
        op.failure = Operation.Failure(reason: reason, output: [], code: 1)
        op.report("\(op.kind.rawValue) failed: \(reason)")
        rollBack(op, slots: slots.map(\.index))
    }
}
