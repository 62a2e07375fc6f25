import BatonCore
import BatonSystem
import Glibc
import Logging

/// Memory: sampling every `check_interval` (RSS from statm every tick,
/// PSS/USS from smaps_rollup every `smaps_every` ticks and before every
/// decision), the periodic restart policy, and the pre-deploy check (its roll-ahead's
/// steps: Supervisor+RollAhead.swift).
extension Supervisor {
    // MARK: - Sampling and the policy

    /// Starts the periodic memory check.
    func startMemoryChecks() {
        loop.schedule(after: config.memory.checkInterval) { [unowned self] in self.memoryTick() }
        startOOMWatch()
        announceMemoryMerge()
    }

    /// One periodic check: the workers are measured off the loop (a detailed
    /// read walks every page table: about 1 s of CPU for 256 workers of
    /// 60 MiB), the policy runs on the loop with the result. A check that
    /// comes while the last read is still running is skipped.
    private func memoryTick() {
        guard phase != .stopping else { return }
        loop.schedule(after: config.memory.checkInterval) { [unowned self] in self.memoryTick() }
        // The counts workers reported, looked at again: one past its limit reported while a
        // slot did not serve was left until the worker's next report (a policy audit: 22,208
        // against 3,000 for as long as no request came).
        recycleByRequestCount()
        // A detailed tick's figures are fresh PSS/USS: the policy may decide on them
        // without asking for another read.
        guard let detailed = memoryMonitor.nextTick(smapsEvery: config.memory.smapsEvery) else { return }
        sampleOffLoop(detailed: detailed) { [unowned self] in self.runPolicy(detailed: detailed) }
    }

    /// A recycle for `reason` is done: its place in the budget is free and the old worker's
    /// memory is back. After one a memory rule ordered, the workers are measured and the policy
    /// looks again now, not at the next periodic check: under a fast leak that wait (up to
    /// `check_interval`) would be a large part of every recycle. Other reasons (age, request
    /// count) wait for the periodic check: a read walks every worker's page tables. A read
    /// already running is followed by the policy anyway.
    func recheckMemorySoon(after reason: RestartReason) {
        guard [.memoryThreshold, .leakPrediction, .workerLimit].contains(reason) else { return }
        guard phase != .stopping, !memoryMonitor.readRunning else { return }
        sampleOffLoop(detailed: true) { [unowned self] in self.runPolicy(detailed: true) }
    }

    /// Measures every live worker's process tree (PSS/USS, feeding the leak-rate history) for
    /// a decision that needs the figures now: an operation's start (a deploy's order, the
    /// first step's width), a preflight, a dry run, a roll for the reservation. The read runs
    /// off the loop (a detailed read walks every page table: about 1 s of CPU for 256 workers
    /// of 60 MiB, which held the loop at every deploy's start before); `then` runs on the loop
    /// with the figures stored. A read not back within ``measureWait`` (smaps_rollup stuck in
    /// uninterruptible sleep while the host stalls) is not waited for: `then` runs on the last
    /// samples, and the read's figures are stored when it ends.
    func measureThen(_ purpose: String, _ then: @escaping () -> Void) {
        let onTime = boundedWait(Self.measureWait) { [unowned self] in
            logger.warning(
                "the workers' memory read for \(purpose) did not finish within \(Units.formatDuration(Self.measureWait)): going on with the last samples")
            then()
        }
        // Under vm.overcommit_memory = 2 the serving workers' median commit charge too (a walk
        // of each one's maps): it was read on the loop at each operation's start, preflight
        // and metrics scrape.
        sampleOffLoop(detailed: true, commitCharge: true) { onTime(then) }
    }

    /// How long a decision waits for its read of the workers' memory (as `baton status` does).
    static var measureWait: Duration { statusReadWait }

    /// A wait of at most `wait` for a job off the loop: `late` runs if it is not back by then.
    /// The job calls the returned function when it is back, with what to do then: that runs
    /// only if `late` has not (its timer is cancelled), so exactly one of the two runs.
    func boundedWait(_ wait: Duration, late: @escaping () -> Void) -> (_ onTime: () -> Void) -> Void {
        var settled = false
        let timer = loop.schedule(after: wait) {
            guard !settled else { return }
            settled = true
            late()
        }
        return { [unowned self] onTime in
            guard !settled else { return }
            settled = true
            self.loop.cancel(timer)
            onTime()
        }
    }

    /// Every worker's tree read on a thread of its own; `then` runs on the loop once
    /// the figures are in. `commitCharge`: under `vm.overcommit_memory = 2`, the serving
    /// workers' median commit charge too (`MemoryMonitor.commitPerWorker`).
    private func sampleOffLoop(detailed: Bool, commitCharge: Bool = false, then: @escaping () -> Void) {
        memoryMonitor.readStarted()
        let pids = measuredPIDs
        let serving = commitCharge ? slots.compactMap { $0.current?.pid } : []
        let ksm = config.memory.mergeable
        loop.offload({ [reader = host.memory] in
            let trees = MemoryMonitor.read(pids, detailed: detailed, ksm: ksm, with: reader)
            guard commitCharge, (try? reader.hostReadings())?.overcommit == .strict else { return (trees, UInt64?.none) }
            let commits = serving.compactMap { reader.treeCommitCharge(of: $0) }.sorted()
            return (trees, commits.isEmpty ? nil : commits[commits.count / 2])
        }) { [unowned self] (readings: [pid_t: MemorySample], commit: UInt64?) in
            self.memoryMonitor.readFinished()
            self.apply(readings, detailed: detailed)
            if commitCharge { self.memoryMonitor.commitPerWorker = commit }
            then()
        }
    }

    /// Every worker not yet exited (serving, starting or draining).
    var liveWorkerPIDs: [pid_t] {
        slots.flatMap { $0.workers.filter { $0.state != .exited }.map(\.pid) }
    }

    /// The process trees each memory read measures: live workers, molds, a previous baton's
    /// orphans.
    var measuredPIDs: [pid_t] { liveWorkerPIDs + moldPIDs + orphanPIDs }

    /// Stores readings on the workers still alive (the monitor's rules), and the molds'.
    private func apply(_ readings: [pid_t: MemorySample], detailed: Bool) {
        memoryMonitor.apply(readings, detailed: detailed, to: slots.flatMap(\.workers), now: loop.now())
        for pid in orphanPIDs { if let m = readings[pid] { takeOver.memory[pid] = m } }
        guard moldMode else { return }
        moldBook.memory = readings.filter { pid, _ in moldBook.molds.contains { $0.pid == pid && $0.state != .exited } }
        if let ready = largestReadyMoldRSS { moldBook.lastReadyRSS = ready }
    }

    private func runPolicy(detailed: Bool) {
        defer { sayHeldOverTheLine() }
        // A recycle running does not hold the policy back: the recycling budget does.
        let busy = recyclingBlocked
        let readings: MemoryReadings?
        do {
            readings = try host.memory.hostReadings()
            sayHostMemory(unreadable: nil)
        } catch {
            readings = nil
            sayHostMemory(unreadable: error)
        }
        var budget =
            readings.map { EffectiveBudget.resolve(config.memory.budget, readings: $0) }
            ?? EffectiveBudget(bytes: config.memory.budget.bytes ?? UInt64.max, source: .configured)
        sayBudgetOverTheLimit(budget)
        // A held reservation is not the workers' to spend: the policy measures against the rest,
        // and what the tooling took of it is out of the cgroup's working set it measures (a
        // memory audit: a CI build's 250 MiB counted twice, 509.6 MiB "> 80 % of 486 MiB", the
        // workers' share 259.6 MiB).
        budget.bytes -= min(budget.bytes, reservedBytes)
        var cgroup = readings?.cgroup
        if var figures = cgroup, memoryMonitor.reservationToolingBytes > 0 {
            figures.usage -= min(figures.usage, memoryMonitor.reservationToolingBytes)
            cgroup = figures
        }
        let workers = slots.compactMap { slot -> RestartPolicy.Worker? in
            guard let w = slot.current else { return nil }
            return RestartPolicy.Worker(
                slot: slot.index, pid: w.pid, startedAt: w.startedAt, ready: w.state == .ready,
                memory: detailed ? w.memory : w.memoryReadings.projected, history: w.history,
                ussAtReady: w.ussAtReady)
        }
        var tick = RestartPolicy.Tick(
            now: loop.now(), workers: workers, budget: budget, cgroup: cgroup, detailed: detailed, operationRunning: busy,
            bootTime: slots.compactMap { $0.current?.bootTime }.max())
        var settings = memoryMonitor.policy.settings
        settings.concurrency = busy ? 1 : recycleBudget()
        memoryMonitor.policy.reconfigure(settings)
        // One tick may order up to the budget: each order takes its slot out of the next pick.
        for _ in 0..<max(1, settings.concurrency) {
            // The engine owns where each recycle is; the policy reads its settling slots afresh.
            tick.settling = Set(recycling.settling.keys)
            tick.recycling = Set(recycling.recycling.keys)
            switch memoryMonitor.policy.tick(tick) {
            case .measure?:
                guard !detailed, !memoryMonitor.readRunning else { return }
                sampleOffLoop(detailed: true) { [unowned self] in self.runPolicy(detailed: true) }
                return
            case .replace(let slot, let reason, let detail)?:
                submitPolicyRestart(slot: slot, reason: reason, log: "restart policy: \(detail)")
            case nil:
                pumpRecycling()
                return
            }
        }
        pumpRecycling()
    }

    /// Logs once (again after a reload or a new limit) that `[memory] budget` is over the limit
    /// the kernel enforces, which the rules then measure against.
    private func sayBudgetOverTheLimit(_ budget: EffectiveBudget) {
        guard budget.configuredOver != memoryMonitor.saidBudgetOver else { return }
        memoryMonitor.saidBudgetOver = budget.configuredOver
        if let warning = budget.overTheLimitWarning { logger.warning("\(warning)") }
    }

    /// Logs once when the host's memory figures cannot be read, and once when they can again;
    /// `baton status` shows it meanwhile (a hardening audit: under systemd's `ProcSubset=pid`,
    /// which hides /proc/meminfo, the threshold rules and the cgroup's limit were off and
    /// nothing said so but `memory unknown` in a deploy's plan).
    private func sayHostMemory(unreadable error: MemoryReadError?) {
        let problem = error.map(Self.hostMemoryProblem)
        guard problem != memoryMonitor.hostMemoryProblem else { return }
        memoryMonitor.hostMemoryProblem = problem
        if let problem {
            logger.warning("\(problem)")
        } else {
            logger.info("the host's memory figures are readable again: the memory rules use them")
        }
    }

    /// What a failed read of the host's figures takes away, and the likely cause when /proc
    /// hides the file.
    static func hostMemoryProblem(_ error: MemoryReadError) -> String {
        "cannot read the host's memory figures: \(error)\(error.hint); the memory rules, the cgroup's limit and the deploy's memory checks run without them"
    }

    /// Logs once when the total stays over the threshold by more than restarts could free (the
    /// rules restart no worker for it), and once when that ends; `baton status` shows it meanwhile.
    private func sayHeldOverTheLine() {
        let held = memoryMonitor.policy.heldOverTheLine
        guard (held != nil) != memoryMonitor.saidHeldOverTheLine else { return }
        memoryMonitor.saidHeldOverTheLine = held != nil
        if let held {
            logger.warning("restart policy: \(held); no worker is restarted for the threshold")
        } else {
            logger.info("restart policy: the total is no longer over the threshold by more than the workers' growth")
        }
    }

    // MARK: - Preflight and roll-ahead

    /// The figures of a planned deploy against the headroom right now, from the workers' last
    /// memory sample: `baton preflight` and a roll-ahead measure them first
    /// (``measureThen(_:_:)``); the metrics endpoint shows them as they are, so that a scrape
    /// neither walks every worker's page tables nor adds points to the leak-rate histories.
    /// `maxSurge`: the surge width planned (default `[deploy] max_surge`). `op`: a roll-ahead,
    /// which keeps the commit charge read now for the rollout it plans next.
    func preflight(
        release: String?, need: UInt64, strategy: DeployStrategy? = nil, maxSurge: Int? = nil, for op: Operation? = nil
    ) throws -> (
        PreflightVerdict, PreflightReport
    ) {
        let readings = try host.memory.hostReadings()
        let target = release ?? releaseState.current.directory
        // Never the running workers' PSS: grown workers would make a new one look as large.
        let footprint = memoryMonitor.footprints.estimate(release: target, configured: config.deploy.workerFootprint)
        // Every worker not gone holds memory, as a rollout's plan counts them: a draining one
        // and a previous baton's orphan too (a drain audit: preflight said `fits` with 84 MiB of
        // headroom while draining workers held 44 MiB of it).
        let pss = liveWorkersPSS(footprint: footprint?.bytes)
        // The molds hold memory of the budget's that no worker's PSS counts.
        let headroom = Headroom(readings: readings, memory: config.memory, workersPSS: pss + moldsPSS)
        let plan = DeployPlan(
            strategy: strategy ?? config.deploy.strategy, maxSurge: min(maxSurge ?? config.deploy.maxSurge, slots.count), footprint: footprint?.bytes,
            commitPerWorker: commitPerWorker(readings, .again(op)), tooling: need + oomMargin(footprint: footprint?.bytes),
            mold: newMoldBytes(release: release))
        var verdict = PreflightCheck.evaluate(plan, headroom: headroom)
        if memoryMonitor.footprints.killedUnsettled.contains(target) {
            verdict.summary += " (the kernel's OOM killer took a new worker of \(target) before its footprint settled)"
        }
        let budget = EffectiveBudget.resolve(config.memory.budget, readings: readings)
        var report = PreflightReport(
            fits: verdict.fits, summary: verdict.summary, strategy: verdict.strategy.rawValue, needBytes: verdict.bindingNeed,
            haveBytes: verdict.binding.available, binding: verdict.binding.kind.name, budgetBytes: budget.bytes,
            budgetSource: budget.source.rawValue, workersPSSBytes: pss, footprintBytes: footprint?.bytes,
            limits: headroom.limits.map { PreflightReport.Limit(kind: $0.kind.name, availableBytes: $0.available) }, rolledAhead: nil)
        report.reservation = reservationReport()
        return (verdict, report)
    }

    /// `baton preflight [--release DIR] [--need SIZE] [--roll-ahead [--hold D]] [--release-reservation]`.
    func requestPreflight(_ options: PreflightOptions, waiter: any OperationWaiter, uid: uid_t) {
        if options.releaseReservation == true {
            requestReleaseReservation(waiter: waiter)
            return
        }
        let need: UInt64
        if let text = options.need {
            // Bounded: the need is added to surge × footprint, which must not overflow.
            guard let bytes = Units.parseBoundedSize(text) else {
                waiter.finish(
                    .failure(
                        "--need expects a size like \"512MiB\", at most 1 PiB, got \"\(ControlProtocol.printable(text))\"", code: 2))
                return
            }
            need = bytes
        } else {
            need = 0
        }
        var hold = Reservation.defaultHold
        if let text = options.hold {
            guard let d = Units.parseDuration(text), d > .zero, d <= Reservation.maximumHold else {
                waiter.finish(
                    .failure(
                        "--hold expects a duration like \"15m\", more than 0 and at most \(Units.formatDuration(Reservation.maximumHold)), got \"\(ControlProtocol.printable(text))\"",
                        code: 2))
                return
            }
            guard options.rollAhead == true else {
                waiter.finish(.failure("--hold needs --roll-ahead (only a roll-ahead holds a reservation)", code: 2))
                return
            }
            hold = d
        }
        // The release the next deploy will run names its footprint. Its folder need not exist
        // yet (baton-deploy asks before it copies anything), but it is a path as a deploy's is.
        if let release = options.release, !release.hasPrefix("/") {
            waiter.finish(.failure("--release must be an absolute path, got \"\(ControlProtocol.printable(release))\"", code: 2))
            return
        }
        // Every worker measured first, off the loop.
        measureThen("a preflight") { [unowned self] in
            self.answerPreflight(options, need: need, hold: hold, waiter: waiter, uid: uid)
        }
    }

    /// `baton preflight`, once the workers were measured.
    private func answerPreflight(_ options: PreflightOptions, need: UInt64, hold: Duration, waiter: any OperationWaiter, uid: uid_t) {
        // A new roll-ahead plans from scratch: the reservation it replaces must not count twice.
        if options.rollAhead == true, operations.isBusy == false { releaseReservation("a new preflight --roll-ahead replaces it") }
        let verdict: PreflightVerdict
        let report: PreflightReport
        do {
            (verdict, report) = try preflight(release: options.release, need: need)
        } catch {
            waiter.finish(.failure("preflight: cannot measure memory: \(error)\((error as? MemoryReadError)?.hint ?? "")", code: 1))
            return
        }
        let details = Self.preflightDetails(report) + oomMarginDetails(footprint: report.footprintBytes)
        guard options.rollAhead == true else {
            waiter.finish(
                verdict.fits
                    ? ControlReply.success(verdict.summary, details: details, payload: .preflight(report))
                    : ControlReply.failure(verdict.summary, code: 1, details: details, preflight: report))
            return
        }
        let extra = config.memory.reservationMargin + expectedGrowth(hold: hold)
        let plan = RollAhead.plan(for: verdict, workers: currentGrowth(), extra: extra)
        if plan.canFit, plan.slots.isEmpty, verdict.fits {
            holdReservation(bytes: need, hold: hold, rolledAhead: nil)
            var r = report
            r.reservation = reservationReport()
            let line = "\(verdict.summary); with \(Units.formatSize(extra)) kept free beyond the need (margin + expected growth): no restart needed"
            waiter.finish(.success(line, details: details + [r.reservation?.line ?? ""], payload: .preflight(r)))
            return
        }
        guard plan.canFit, let first = plan.slots.first else {
            waiter.finish(.failure(Self.rollAheadRefusal(verdict, plan), code: 1, details: details, preflight: report))
            return
        }
        let op = makeOperation(kind: .rollAhead, options: nil, uid: uid)
        op.slots = [first]
        op.reason = .rollAhead
        op.need = need
        op.hold = hold
        op.waiters.append(waiter)
        if operation == nil && queue.isEmpty {
            waiter.send(.progress(verdict.summary))
            waiter.send(.progress("roll-ahead: \(plan.summary)"))
        }
        // Refused ("roll-ahead refused: a deploy is in progress") while any operation runs or waits.
        submit(op)
    }

    static func preflightDetails(_ r: PreflightReport) -> [String] {
        var lines = [
            "budget: \(Units.formatSize(r.budgetBytes)) (\(r.budgetSource)); workers' PSS: \(Units.formatSize(r.workersPSSBytes)); new worker footprint: \(r.footprintBytes.map(Units.formatSize) ?? "unknown")"
        ]
        for limit in r.limits {
            lines.append("headroom under \(limit.kind): \(Units.formatSignedSize(limit.availableBytes))")
        }
        return lines
    }
}

extension MemoryBudget {
    /// The configured byte figure, nil for auto.
    var bytes: UInt64? {
        if case .bytes(let b) = self { return b }
        return nil
    }
}
