import BatonCore
import BatonSystem
import Logging

/// Every recycle between deploys (OOM kill, `worker_limit`, threshold, leak prediction,
/// `max_requests`, age) goes through one `RecyclingEngine` (BatonCore): the reasons submit
/// candidates, the engine says what starts under `[rolling] recycle_concurrency` and
/// `recycle_spacing`, by priority, never while a deploy, reload, rollback or roll-ahead runs or
/// waits. The recycles running at once share one policy operation: the first starts it, the
/// next ones join its rollout, which surges as wide as memory allows (`RolloutPlanner`).
extension Supervisor {
    /// A reason asks for the recycle of `slot`'s serving worker (logged with `message` when it is
    /// new to the queue). The memory policy, the request-count recycler and the OOM watch all
    /// recycle this way.
    func submitPolicyRestart(slot: Int, reason: RestartReason, log message: String) {
        guard slots.indices.contains(slot), let pid = slots[slot].current?.pid else { return }
        let metadata: Logger.Metadata = ["slot": .stringConvertible(slot), "reason": .string(reason.rawValue)]
        switch recycling.submit(slot: slot, pid: pid, reason: reason, detail: message, now: loop.now()) {
        case .queued:
            logger.info("\(message)", metadata: metadata)
        case .upgraded(let from):
            logger.info("\(message) (queued for \(from.rawValue) until now)", metadata: metadata)
        case .alreadyQueued, .alreadyRecycling:
            return
        }
        pumpRecycling()
    }

    /// A deploy, reload, rollback or roll-ahead runs or waits, or an upgrade is checked: they own
    /// the slots, so no reason orders a recycle meanwhile (a recycle running is not one of them).
    var recyclingBlocked: Bool {
        if upgradeInProgress || !operations.queued.isEmpty { return true }
        if let running = operations.running { return running.kind != .policy }
        return phase != .running
    }

    /// Recycles at once now: the configured number, or (auto) the width the rollout planner
    /// allows under `[deploy] strategy` from the memory headroom and the CPUs, at most one per
    /// CPU (a slot whose old worker still drains counts too). While a recycle's operation runs,
    /// the planner gets that operation's commit charge (read once per operation).
    func recycleBudget() -> Int {
        guard recycling.concurrency == .auto else { return recycling.budget(autoWidth: 1) }
        let cpus = followUsableCPUs()
        let planner = RolloutPlanner(
            strategy: config.deploy.strategy, maxSurge: .auto, maxUnavailable: config.deploy.maxUnavailable, bootBudget: bootBudget.boots)
        let step = planner.step(rolloutFigures(release: nil, for: operation.flatMap { $0.kind == .policy ? $0 : nil }))
        return recycling.budget(autoWidth: min(step.width, cpus, slots.count))
    }

    /// Frees the engine's place of `slot` once its recycle's rollout reached it, then starts what
    /// may start now and schedules the next look when the spacing holds a start back.
    func pumpRecycling() {
        guard !recyclePumping else { return }
        recyclePumping = true
        defer { recyclePumping = false }
        if let op = operation, op.kind == .policy, op.phase == .rollingOut, let machine = rollout {
            for c in recycling.rolloutProgressed(machine) {
                // Still in its window (the engine's `settling`, which the policy's ticks read):
                // the policy may order the next one, but a death in the window fails this
                // recycle yet (`min_worker_age` cooldown).
                if recycling.settling[c.slot] != nil {
                    logRecycleEnd(c, "done")
                    recheckMemorySoon(after: c.reason)
                } else {
                    recycleEnded(c, succeeded: true)
                }
            }
            for c in recycling.rolloutSettled(machine) { memoryMonitor.policy.replacementFinished(slot: c.slot, now: loop.now()) }
        }
        guard !recycling.queued.isEmpty else { return }
        // At most app.workers recycles per operation, so that one ends and shows in history.
        let appendable =
            operation.map { $0.kind == .policy && $0.phase == .rollingOut && rollout?.isFinished == false && ($0.slots?.count ?? 0) < slots.count }
            ?? true
        let now = loop.now()
        // A slot whose new worker is still in its window cannot join the rollout again yet: its
        // candidate waits for the window (the workerStable event pumps again).
        let settling = Set(operation?.kind == .policy ? rollout?.settlingSlots ?? [] : [])
        // Planned once a pump: it reads the host's memory (and, in a recycle's operation, may walk
        // every worker's maps once); the log line of each start quotes this figure.
        let budget = recycleBudget()
        let plan = recycling.next(
            now: now, blocked: recyclingBlocked || !appendable, autoWidth: budget, settling: { settling.contains($0) }
        ) { [slots] slot, pid in
            guard let w = slots[slot].current else { return false }
            return w.pid == pid && w.state == .ready && slots[slot].replacement == nil
        }
        for dropped in plan.dropped {
            memoryMonitor.policy.replacementFinished(slot: dropped.slot, now: now)
            logger.info(
                "recycle of slot \(dropped.slot) dropped: pid \(dropped.pid) no longer serves there",
                metadata: ["slot": .stringConvertible(dropped.slot), "reason": .string(dropped.reason.rawValue)])
        }
        for candidate in plan.starts { startRecycle(candidate, budget: budget) }
        if let t = recycleWake {
            loop.cancel(t)
            recycleWake = nil
        }
        if let wake = plan.wakeAt {
            recycleWake = loop.schedule(after: max(.zero, wake - now)) { [unowned self] in
                self.recycleWake = nil
                self.pumpRecycling()
            }
        }
    }

    /// Starts the recycle of one slot: it joins the recycle operation running, else starts one.
    /// `budget`: the recycles allowed at once, as this pump planned it (for the log line).
    private func startRecycle(_ c: RecyclingEngine.Candidate, budget: Int) {
        logger.info(
            "recycle of slot \(c.slot) started (\(recycling.recycling.count) at once, budget \(budget))",
            metadata: ["slot": .stringConvertible(c.slot), "pid": .stringConvertible(c.pid), "reason": .string(c.reason.rawValue)])
        if let op = operation, op.kind == .policy {
            // Its reason is the slot's before the rollout starts (or drains) anything there.
            let previousReason = op.slotReasons[c.slot]
            op.slotReasons[c.slot] = c.reason
            var joined = false
            rolloutEvent { machine in
                joined = machine.append(slot: c.slot)
                return []
            }
            if joined {
                op.slots = (op.slots ?? []) + [c.slot]
                op.report("slot \(c.slot) joins (\(c.reason.rawValue))")
            } else {
                op.slotReasons[c.slot] = previousReason
                // Its slot is still settling in this rollout: it waits for the next look.
                recycling.finished(slot: c.slot)
                _ = recycling.submit(slot: c.slot, pid: c.pid, reason: c.reason, detail: c.detail, now: c.since)
            }
            return
        }
        let op = makeOperation(kind: .policy, options: nil, uid: nil)
        op.slots = [c.slot]
        op.reason = c.reason
        op.slotReasons[c.slot] = c.reason
        op.recycleWidth = recycling.concurrency == .auto ? slots.count : recycling.budget(autoWidth: 1)
        submit(op)
        // Refused (the overlap rules disagreed) or over at once: its place is free again.
        if operationTable[op.number] == nil { recycleEnded(slot: c.slot, succeeded: operation == nil) }
    }

    /// The recycle of `slot` ended: the engine's place and the memory policy are freed (a failed
    /// one leaves the slot alone for `min_worker_age`).
    func recycleEnded(slot: Int, succeeded: Bool) {
        let settled = recycling.settling[slot] != nil
        guard let c = recycling.finished(slot: slot) else {
            memoryMonitor.policy.replacementFinished(slot: slot, now: loop.now())
            return
        }
        // Freed and logged "done" already: only a failure in its window is news.
        if settled && succeeded {
            memoryMonitor.policy.replacementFinished(slot: slot, now: loop.now())
            return
        }
        recycleEnded(c, succeeded: succeeded)
    }

    /// The recycle `c`, out of the engine, ended: the memory policy is freed and it is logged.
    private func recycleEnded(_ c: RecyclingEngine.Candidate, succeeded: Bool) {
        let slot = c.slot
        if succeeded {
            memoryMonitor.policy.replacementFinished(slot: slot, now: loop.now())
            recheckMemorySoon(after: c.reason)
        } else {
            memoryMonitor.policy.replacementFailed(slot: slot, now: loop.now())
        }
        logRecycleEnd(c, succeeded ? "done" : "failed")
    }

    private func logRecycleEnd(_ c: RecyclingEngine.Candidate, _ how: String) {
        logger.info("recycle of slot \(c.slot) \(how)", metadata: ["slot": .stringConvertible(c.slot), "reason": .string(c.reason.rawValue)])
    }
}
