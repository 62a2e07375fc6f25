import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc
import Logging

/// In-place self-upgrade: `baton upgrade` re-executes the (possibly new)
/// binary with execve. Same PID, so systemd's MainPID is unchanged and the
/// workers stay children and keep serving; listeners, the control socket,
/// worker pidfds, pipes and notify sockets stay open, and the state passes in
/// a memfd. The new binary first runs as a check child (`baton upgrade
/// --check`) that must answer the versioned handshake (`UpgradeHandshake`);
/// a binary that does not leaves this image running untouched.
extension Supervisor {
    /// How long the new binary's check may take unless `baton upgrade --timeout` says otherwise.
    static let upgradeCheckTimeout = UpgradeCoordinator.checkTimeout

    /// `baton upgrade [--binary PATH] [--timeout D]`: the coordinator checks the binary, then
    /// this image hands its state over and re-executes it.
    func requestUpgrade(binary: String?, checkTimeout: Duration = upgradeCheckTimeout, waiter: ControlConnection) {
        if let reason = upgradeBlocker() {
            // A policy restart (and only that) runs: wait for it, up to the timeout, holding the
            // next recycles back.
            if phase == .running || phase == .restarting, takeOver.orphans.isEmpty, upgrade.waiting == nil, !upgrade.inProgress, operation?.kind == .policy,
                queue.allSatisfy({ $0.kind == .policy })
            {
                waiter.send(.progress("waiting: a policy restart is in progress; the upgrade runs after it (no recycle starts meanwhile)"))
                upgrade.waiting = .init(binary: binary, timeout: checkTimeout, waiter: waiter, deadline: loop.now() + checkTimeout)
                awaitPolicyForUpgrade()
                return
            }
            refuseUpgrade(reason, waiter)
            return
        }
        upgrade.check(
            path: binary ?? options.executable, owner: geteuid(), configPath: options.configPath, environment: options.environment,
            timeout: checkTimeout, waiter: waiter
        ) { [unowned self] candidate in
            self.reexecute(candidate, waiter: waiter)
        }
    }

    /// Looks every 100 ms whether the upgrade waiting can run (the policy restart ended and its
    /// slots serve), until its deadline.
    private func awaitPolicyForUpgrade() {
        loop.schedule(after: .milliseconds(100)) { [unowned self] in
            guard let waiting = self.upgrade.waiting else { return }
            if self.upgradeBlocker(waited: true) == nil {
                self.upgrade.waiting = nil
                self.requestUpgrade(binary: waiting.binary, checkTimeout: waiting.timeout, waiter: waiting.waiter)
            } else if self.loop.now() >= waiting.deadline || self.phase == .stopping {
                self.upgrade.waiting = nil
                self.refuseUpgrade(
                    "the policy restart in progress did not end within \(Units.formatDuration(waiting.timeout))", waiting.waiter)
                self.pumpRecycling()
            } else {
                self.awaitPolicyForUpgrade()
            }
        }
    }

    /// Refuses the upgrade for `reason`, in the log too (a day-2 audit: a refusal for the config
    /// or a running operation reached only the client; the log said "checking the new binary").
    private func refuseUpgrade(_ reason: String, _ waiter: ControlConnection) {
        logger.warning("upgrade refused: \(reason); nothing changed")
        waiter.finish(.failure("upgrade refused: \(reason); nothing changed", code: 1))
    }

    /// Why an upgrade cannot happen now, if it cannot (`waited`: for the upgrade waiting itself).
    private func upgradeBlocker(waited: Bool = false) -> String? {
        if upgrade.inProgress || (upgrade.waiting != nil && !waited) { return "an upgrade is in progress" }
        // Their pidfds and kill timers would not cross the execve.
        if !takeOver.orphans.isEmpty { return "workers of the previous baton are still draining (take-over)" }
        // (A re-audit: "a stopping is in progress".)
        if phase == .stopping { return "baton is stopping" }
        if phase != .running || operation != nil || !queue.isEmpty { return "a \(operation?.kind.noun ?? phase.rawValue) is in progress" }
        for slot in slots {
            guard let w = slot.current, w.state == .ready, slot.replacement == nil, slot.draining.isEmpty else {
                return "slot \(slot.index) is not serving a ready worker (starting, draining or restarting)"
            }
        }
        return nil
    }

    /// Why the config file, as the new image would load it, cannot run the workers and sockets
    /// this image hands over: what a reload refuses (`app.workers`, `app.name`), and what only a
    /// restart applies (`[listen]`, `[control]`, `[metrics]`, the state and runtime directories),
    /// which the new image would otherwise take as running (an operator audit: an upgrade with
    /// `workers` edited said "3 workers kept" under a config of 2; one with `state_directory`
    /// edited came back with an empty history). Read here, on the loop, once the check passed:
    /// the check child has just parsed the same file.
    private func configBlocker() -> String? {
        guard let load = options.reloadConfig, let fresh = try? load() else { return nil }
        do {
            try checkReloadable(fresh)
        } catch {
            return "\(error)"
        }
        let changes = restartOnlyChanges(fresh)
        guard !changes.isEmpty else { return nil }
        return
            "\(changes.joined(separator: ", ")) changed in the config: an upgrade keeps the running sockets and directories, so only a restart applies that (or put the running values back)"
    }

    private func reexecute(_ binary: UpgradeBinary, waiter: ControlConnection) {
        defer { binary.close() }  // reached only when the execve did not happen
        let path = binary.path
        if let line = binary.scriptLine {
            refuseUpgrade(
                "\(path) is a script (\(line)): baton execs the checked file by its descriptor, which a script's interpreter cannot open; give the binary it runs",
                waiter)
            return
        }
        if let reason = upgradeBlocker() ?? configBlocker() {
            // Something changed while the check ran (a worker crashed, ...), or the config did.
            refuseUpgrade(reason, waiter)
            return
        }
        guard let control else { return }
        // Said only now: a blocker found above refuses after "check passed", never after "re-executing"
        // (an operator audit saw "re-executing …" followed by "upgrade refused").
        waiter.send(.progress("re-executing \(path) as pid \(getpid())"))
        upgrade.reexecuting()
        logger.info("upgrade: execve \(path)")
        // The log writer's thread does not survive the execve: give what it holds a bounded
        // chance, then count the rest as dropped before the count goes into the handoff.
        LogWriter.standardError.flush(timeout: .seconds(1))
        LogWriter.standardError.abandonUnwritten()
        let state = upgradeState(controlFD: control.fd, clientFD: waiter.fd)
        // Owned: closed once, after the execve failed (a new image gets it across the execve).
        let memfd: OwnedDescriptor
        do {
            let encoder = JSONEncoder()
            memfd = OwnedDescriptor(try CBatonLinuxShim.memoryFile(name: "baton-upgrade", bytes: Array(try encoder.encode(state))))
        } catch {
            LogWriter.standardError.resumeWriting()
            upgrade.failed()
            waiter.finish(.failure("upgrade failed before execve: \(error); nothing changed", code: 1))
            return
        }
        notifier.reloading(status: "upgrading: re-executing \(path)")
        for fd in state.descriptors { CBatonLinuxShim.keepAcrossExec(fd) }
        var arguments = options.arguments.filter { !$0.hasPrefix("--resume=") }
        if arguments.isEmpty { arguments = [path] }
        arguments[0] = path
        arguments.append("--resume=\(memfd.rawValue)")
        // The checked file itself, not the path: nothing swapped in since runs.
        let error = CBatonLinuxShim.execute(fd: binary.fd, path: path, arguments: arguments, environment: options.environment)
        // Still here: the execve failed. Put everything back.
        LogWriter.standardError.resumeWriting()
        for fd in state.descriptors { try? setCloseOnExec(fd) }
        _ = consume memfd  // closes it: no new image reads it
        upgrade.failed()
        notifier.ready(status: summary)
        logger.error("upgrade: \(error); this image keeps running")
        waiter.finish(.failure("upgrade failed: \(error); nothing changed", code: 1))
    }

    /// What this image hands the next: the descriptors that stay open and the state around them.
    /// `clientFD`: the `baton upgrade` client's connection, answered by the next image.
    func upgradeState(controlFD: Int32, clientFD: Int32?) -> UpgradeState {
        UpgradeState(
            listeners: listeners.map { .init(fd: $0.fd, name: $0.name, address: $0.address) }, controlFD: controlFD, metricsFD: metrics?.fd,
            slots: slots.compactMap { slot in
                guard let w = slot.current else { return nil }
                return UpgradeState.SlotState(
                    index: slot.index, generation: slot.generation, restarts: slot.restarts, lastRestartReason: slot.lastRestartReason?.text,
                    spec: .init(slot.spec),
                    worker: .init(
                        slot: w.slot, generation: w.generation, pid: w.pid, pidfd: w.pidfd, notifyFD: w.notifyFD,
                        notifyPath: w.notifyPath, outputFD: w.outputFD, spec: .init(w.spec), startedAtNanos: w.startedAt.nanoseconds,
                        startedAtWall: w.startedAtWall, readyAtNanos: w.readyAt?.nanoseconds, statusText: w.statusText,
                        watchdogNanos: w.watchdogInterval?.nanoseconds, ussAtReady: w.ussAtReady, memoryHistory: w.history.samples,
                        folder: w.folder, partialOutput: w.outputLines.pending))
            },
            releaseState: releaseState, sentReady: sentReady, degraded: degraded, clientFD: clientFD,
            createdNotifyDirectory: createdNotifyDirectory,
            // By name: the handoff is read by whichever image comes next.
            restartsByReason: Dictionary(uniqueKeysWithValues: restartsByReason.map { ($0.key.rawValue, $0.value) }),
            deploysByOutcome: Dictionary(uniqueKeysWithValues: deploysByOutcome.map { ($0.key.rawValue, $0.value) }),
            oomTotal: memoryMonitor.oom.tracker.total,
            oomBySlot: Dictionary(uniqueKeysWithValues: memoryMonitor.oom.tracker.bySlot.map { (String($0.key), $0.value) }),
            logDroppedBytes: LogWriter.standardError.droppedBytes,
            footprints: memoryMonitor.footprints.remembered.footprints, footprintOrder: memoryMonitor.footprints.remembered.order,
            reservation: memoryMonitor.heldReservation.map {
                .init(
                    bytes: $0.bytes, margin: $0.margin, heldAtNanos: $0.heldAt.nanoseconds, expiresAtNanos: $0.expiresAt.nanoseconds, rolls: $0.rolls,
                    baselineAvailable: $0.baseline?.available, baselineWorkers: $0.baseline?.workers)
            }, lastRecycleStartNanos: recycling.lastStart?.nanoseconds,
            abandonedSpawns: moldBook.abandonedOutputs.map { .init(pipe: $0.pipe, untilNanos: $0.until.nanoseconds) },
            ownedUnixPaths: ownedUnixPaths, unixListenerFiles: unixListenerFiles.mapValues { [$0.device, $0.inode] },
            lostUnixListeners: lostUnixListeners,
            strayOutputs: strayOutputs.filter { $0.outputFD >= 0 }.map {
                .init(fd: $0.outputFD, prefix: $0.outputPrefix, partialOutput: $0.outputLines.pending)
            })
    }

    /// What the previous image knew of memory and counted, and the failed spawns it looked for
    /// (an operator audit found the first lost across an upgrade: the reservation vanished with
    /// no line, the next deploy knew no footprint and replaced one slot at a time, and two
    /// counters that never decrease reset).
    func resumeCarried(_ state: UpgradeState) {
        memoryMonitor.oom.tracker.carry(
            total: state.oomTotal ?? 0, bySlot: (state.oomBySlot ?? [:]).reduce(into: [:]) { $0[Int($1.key) ?? -1, default: 0] += $1.value })
        LogWriter.standardError.carryDropped(state.logDroppedBytes ?? 0)
        // An older image did not say (a re-audit: the upgrade that brings this in left the file):
        // outside a service manager it bound them itself; under one they are the unit's or the
        // FD store's.
        for (path, file) in state.unixListenerFiles ?? [:] where file.count == 2 {
            unixListenerFiles[path] = FileIdentity(device: file[0], inode: file[1])
        }
        lostUnixListeners = state.lostUnixListeners ?? [:]
        for carried in state.strayOutputs ?? [] {
            let strays = StrayOutput(reader: OwnedDescriptor(carried.fd), prefix: carried.prefix)
            strays.outputLines = OutputLines(pending: carried.partialOutput)
            watchStrayOutput(strays)
        }
        ownedUnixPaths =
            state.ownedUnixPaths
            ?? (notifier.isEnabled ? [] : config.listen.addresses.compactMap { if case .unix(let path) = $0 { path } else { nil } })
        if let footprints = state.footprints {
            memoryMonitor.footprints.remember(footprints: footprints, order: state.footprintOrder ?? Array(footprints.keys))
        }
        // A mold audit: a worker a mold forked for a failed spawn is looked for across the execve
        // too (it may be forked seconds later); looked for once the workers are known.
        moldBook.abandonedOutputs = (state.abandonedSpawns ?? []).map { ($0.pipe, .nanoseconds($0.untilNanos)) }
        // A policy audit: recycles 2.5 s apart across an upgrade, with recycle_spacing 8 s.
        if let last = state.lastRecycleStartNanos { recycling.resume(lastStart: .nanoseconds(last)) }
        if let r = state.reservation {
            var held = Reservation(bytes: r.bytes, margin: r.margin, now: .nanoseconds(r.heldAtNanos), hold: .nanoseconds(r.expiresAtNanos - r.heldAtNanos))
            held.rolls = r.rolls
            if let available = r.baselineAvailable, let workers = r.baselineWorkers { held.baseline = .init(available: available, workers: workers) }
            resumeReservation(held)
        }
    }

    /// Rebuilds the supervisor from the state the previous image left in `fd`.
    func resume(from fd: Int32) throws {
        guard let text = fd >= 0 ? readState(OwnedDescriptor(fd)) : nil else { throw DaemonError("upgrade: cannot read the state in fd \(fd)") }
        let state = try JSONDecoder().decode(UpgradeState.self, from: Data(text.utf8))
        for d in state.descriptors { try setCloseOnExec(d) }
        listeners = state.listeners.map { Listener(fd: $0.fd, name: $0.name, address: $0.address) }
        // A socket unit's names are never baton's own (``openListeners()``).
        socketsFromUnit = listeners.contains { !$0.name.hasPrefix(Sockets.boundPrefix) }
        recordUnixListenerFiles()
        control = try openControlServer(adopting: state.controlFD)
        degraded = state.degraded
        sentReady = state.sentReady
        createdNotifyDirectory = state.createdNotifyDirectory ?? true
        // By name; an older image counted a failed spawn under its error's text.
        restartsByReason = (state.restartsByReason ?? [:]).reduce(into: [:]) { $0[RestartCause(text: $1.key).reason, default: 0] += $1.value }
        let deploys: [OperationOutcome: Int] = (state.deploysByOutcome ?? [:]).reduce(into: [:]) { counts, entry in
            if let outcome = OperationOutcome(rawValue: entry.key) { counts[outcome, default: 0] += entry.value }
        }
        releases.restore(state: state.releaseState, deploysByOutcome: deploys)
        resumeCarried(state)
        slots = try state.slots.sorted { $0.index < $1.index }.map { s in
            let life = SlotLifecycle(
                index: s.index, generation: s.generation, restarts: s.restarts, lastRestartReason: s.lastRestartReason.map(RestartCause.init(text:)))
            let slot = Slot(index: s.index, spec: s.spec.spec, life: life)
            let w = s.worker
            let worker = Worker(
                slot: w.slot, generation: w.generation, process: ChildProcess(pid: w.pid, pidfd: OwnedDescriptor(w.pidfd)), spec: w.spec.spec,
                startedAt: .nanoseconds(w.startedAtNanos), startedAtWall: w.startedAtWall)
            worker.state = .ready
            worker.readyAt = w.readyAtNanos.map { .nanoseconds($0) }
            worker.notifyFD = w.notifyFD
            worker.notifyPath = w.notifyPath
            worker.folder = w.folder
            worker.outputFD = w.outputFD
            worker.outputLines = OutputLines(pending: w.partialOutput)
            worker.statusText = w.statusText
            worker.watchdogInterval = w.watchdogNanos.map { .nanoseconds($0) }
            // A policy audit: the new image measured grown workers afresh, as new ones, and the
            // memory-threshold rule passed them over (52 % against a 40 % line, for minutes).
            worker.memoryReadings.resume(ussAtReady: w.ussAtReady, history: w.memoryHistory ?? [])
            try watch(worker)
            slot.current = worker
            return slot
        }
        // Before the upgrade says it finished (a soak audit: bound after it, a port taken during the
        // execve ended the new image once the CLI had printed "upgrade finished", exit 0, and left
        // the workers without a supervisor). Adopted, it cannot fail; bound (from an older image),
        // a failure is said and baton goes on without it.
        var metricsFailure = ""
        do {
            try startMetrics(adopting: state.metricsFD)
        } catch {
            logger.error("metrics: \(error); baton runs on without its metrics endpoint until it is restarted")
            metricsFailure = "; the metrics endpoint did not start: \(error)"
        }
        performOperations(operations.startUpFinished())
        stopAbandonedSpawns()
        notifier.ready(status: summary)
        lastStatusLine = summary
        logger.info("upgrade: resumed \(slots.count) workers in the new image", metadata: ["pid": .stringConvertible(getpid())])
        if let client = state.clientFD {
            control?.adoptClient(client)?.finish(
                .success("upgrade finished: pid \(getpid()) now runs \(options.executable); \(slots.count) workers kept\(metricsFailure)"))
        }
        // A worker that exited during the execve is still a zombie: handle it now.
        for slot in slots { if let w = slot.current { workerPidfdReadable(w) } }
    }

    /// The state the previous image wrote in `memfd`, which this image owns from now on: closed
    /// once read, whether or not the read worked.
    private func readState(_ memfd: consuming OwnedDescriptor) -> String? {
        try? host.files.read("/proc/self/fd/\(memfd.rawValue)")
    }
}
