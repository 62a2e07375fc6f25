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
    static let upgradeCheckTimeout: Duration = .seconds(30)

    /// `baton upgrade [--binary PATH] [--timeout D]`.
    func requestUpgrade(binary: String?, checkTimeout: Duration = upgradeCheckTimeout, waiter: ControlConnection) {
        let path = binary ?? options.executable
        if let reason = upgradeBlocker() {
            waiter.finish(.failure("upgrade refused: \(reason); nothing changed", code: 1))
            return
        }
        let candidate: UpgradeBinary
        do {
            candidate = try UpgradeBinary.open(path, owner: geteuid())
        } catch {
            logger.error("upgrade refused: \(error)")
            waiter.finish(.failure("upgrade refused: \(error); nothing changed", code: 2))
            return
        }
        upgradeInProgress = true
        waiter.send(.progress("checking \(path): upgrade --check, handshake protocol \(UpgradeHandshake.version)"))
        logger.info("upgrade: checking the new binary", metadata: ["binary": .string(path)])
        let nonce = UpgradeHandshake.makeNonce()
        let pipe: (read: Int32, write: Int32)
        let check: SpawnedProcess
        do {
            pipe = try CBatonLinuxShim.outputPipe()
        } catch {
            candidate.close()
            upgradeInProgress = false
            waiter.finish(.failure("upgrade refused: \(error); nothing changed", code: 1))
            return
        }
        // The child gets the handshake pipe as fd 3 and the checked file as fd 4, and runs
        // that very file through /proc/self/fd/4 (a script's interpreter finds it there too).
        var argv = ["/proc/self/fd/4", "upgrade", "--check", "--handshake-fd", "3", "--nonce", nonce]
        if let config = options.configPath { argv += ["--config", config] }
        let request = SpawnRequest(argv: argv, environment: options.environment, passFDs: [pipe.write, candidate.fd], stdout: 2, stderr: 2)
        do {
            check = try host.spawn(request)
            close(pipe.write)
        } catch {
            close(pipe.write)
            close(pipe.read)
            candidate.close()
            upgradeInProgress = false
            waiter.finish(.failure("upgrade refused: the check of \(path) could not start: \(error); nothing changed", code: 1))
            return
        }
        // Reaped by the pidfd handler below: reapStrays (SIGCHLD) must leave it, or the
        // handler would never see its exit status and the upgrade would hang.
        upgradeCheckPID = check.pid
        let timeout = loop.schedule(after: checkTimeout) { [host] in host.signal(pidfd: check.pidfd, SIGKILL) }
        do {
            try loop.register(fd: check.pidfd, events: .readable) { [unowned self] _ in
                guard let exit = self.host.exitStatus(pidfd: check.pidfd, reap: true) else { return }
                self.upgradeCheckPID = nil
                self.loop.cancel(timeout)
                self.loop.unregister(fd: check.pidfd)
                close(check.pidfd)
                // The child has exited: what it wrote is in the pipe (a grandchild
                // keeping the write end open cannot make this read wait).
                var answer = [UInt8](repeating: 0, count: UpgradeHandshake.maxAnswerBytes)
                let n = answer.withUnsafeMutableBytes { read(pipe.read, $0.baseAddress, $0.count) }
                close(pipe.read)
                let refusal =
                    UpgradeHandshake.refusal(output: Array(answer.prefix(max(n, 0))), nonce: nonce)
                    ?? (exit == .exited(0) ? nil : "the check exited with \(exit) after the handshake")
                if let refusal {
                    candidate.close()
                    self.upgradeInProgress = false
                    let why =
                        exit == .signaled(SIGKILL)
                        ? "no answer within \(Units.formatDuration(checkTimeout)) (\(refusal))" : refusal + (exit == .exited(0) ? "" : ", \(exit)")
                    self.logger.error("upgrade refused: \(path) upgrade --check: \(why); still running the old image")
                    waiter.finish(.failure("upgrade refused: \(path) upgrade --check: \(why); nothing changed", code: 1))
                    return
                }
                waiter.send(.progress("check passed (upgrade protocol \(UpgradeHandshake.version)): re-executing \(path) as pid \(getpid())"))
                self.reexecute(candidate, waiter: waiter)
            }
        } catch {
            host.signal(pidfd: check.pidfd, SIGKILL)
            close(pipe.read)
            candidate.close()
            upgradeInProgress = false
            upgradeCheckPID = nil
            waiter.finish(.failure("upgrade refused: \(error)", code: 1))
        }
    }

    /// Why an upgrade cannot happen now, if it cannot.
    private func upgradeBlocker() -> String? {
        if upgradeInProgress { return "an upgrade is in progress" }
        // Their pidfds and kill timers would not cross the execve.
        if !takeOver.orphans.isEmpty { return "workers of the previous baton are still draining (take-over)" }
        if phase != .running || operation != nil || !queue.isEmpty { return "a \(operation?.kind.rawValue ?? phase.rawValue) is in progress" }
        for slot in slots {
            guard let w = slot.current, w.state == .ready, slot.replacement == nil, slot.draining.isEmpty else {
                return "slot \(slot.index) is not serving a ready worker (starting, draining or restarting)"
            }
        }
        return nil
    }

    private func reexecute(_ binary: UpgradeBinary, waiter: ControlConnection) {
        defer { binary.close() }  // reached only when the execve did not happen
        let path = binary.path
        upgradeInProgress = false
        if let reason = upgradeBlocker() {
            // Something changed while the check ran (a worker crashed, ...).
            waiter.finish(.failure("upgrade refused: \(reason); nothing changed", code: 1))
            return
        }
        guard let control else { return }
        upgradeInProgress = true
        let state = UpgradeState(
            listeners: listeners.map { .init(fd: $0.fd, name: $0.name, address: $0.address) }, controlFD: control.fd,
            slots: slots.compactMap { slot in
                guard let w = slot.current else { return nil }
                return UpgradeState.SlotState(
                    index: slot.index, generation: slot.generation, restarts: slot.restarts, lastRestartReason: slot.lastRestartReason?.text,
                    spec: .init(slot.spec),
                    worker: .init(
                        slot: w.slot, generation: w.generation, pid: w.pid, pidfd: w.pidfd, notifyFD: w.notifyFD,
                        notifyPath: w.notifyPath, outputFD: w.outputFD, spec: .init(w.spec), startedAtNanos: w.startedAt.nanoseconds,
                        startedAtWall: w.startedAtWall, readyAtNanos: w.readyAt?.nanoseconds, statusText: w.statusText,
                        watchdogNanos: w.watchdogInterval?.nanoseconds))
            },
            releaseState: releaseState, sentReady: sentReady, degraded: degraded, clientFD: waiter.fd,
            createdNotifyDirectory: createdNotifyDirectory,
            // By name: the handoff is read by whichever image comes next.
            restartsByReason: Dictionary(uniqueKeysWithValues: restartsByReason.map { ($0.key.rawValue, $0.value) }),
            deploysByOutcome: Dictionary(uniqueKeysWithValues: deploysByOutcome.map { ($0.key.rawValue, $0.value) }))
        let memfd: Int32
        do {
            let encoder = JSONEncoder()
            memfd = try CBatonLinuxShim.memoryFile(name: "baton-upgrade", bytes: Array(try encoder.encode(state)))
        } catch {
            upgradeInProgress = false
            waiter.finish(.failure("upgrade failed before execve: \(error); nothing changed", code: 1))
            return
        }
        notifier.reloading(status: "upgrading: re-executing \(path)")
        for fd in state.descriptors { CBatonLinuxShim.keepAcrossExec(fd) }
        var arguments = options.arguments.filter { !$0.hasPrefix("--resume=") }
        if arguments.isEmpty { arguments = [path] }
        arguments[0] = path
        arguments.append("--resume=\(memfd)")
        logger.info("upgrade: execve \(path)")
        // The log writer's thread does not survive the execve: give what it holds a bounded chance.
        LogWriter.standardError.flush(timeout: .seconds(1))
        // The checked file itself, not the path: nothing swapped in since runs.
        let error = CBatonLinuxShim.execute(fd: binary.fd, path: path, arguments: arguments, environment: options.environment)
        // Still here: the execve failed. Put everything back.
        for fd in state.descriptors { try? setCloseOnExec(fd) }
        close(memfd)
        upgradeInProgress = false
        notifier.ready(status: summary)
        logger.error("upgrade: \(error); still running the old image")
        waiter.finish(.failure("upgrade failed: \(error); nothing changed", code: 1))
    }

    /// Rebuilds the supervisor from the state the previous image left in `fd`.
    func resume(from fd: Int32) throws {
        guard let text = ProcFS.read("/proc/self/fd/\(fd)") else { throw DaemonError("upgrade: cannot read the state in fd \(fd)") }
        close(fd)
        let state = try JSONDecoder().decode(UpgradeState.self, from: Data(text.utf8))
        for d in state.descriptors { try setCloseOnExec(d) }
        listeners = state.listeners.map { Listener(fd: $0.fd, name: $0.name, address: $0.address) }
        control = try ControlServer(adopting: state.controlFD, config: config, loop: loop, logger: logger, supervisor: self)
        degraded = state.degraded
        sentReady = state.sentReady
        createdNotifyDirectory = state.createdNotifyDirectory ?? true
        // By name; an older image counted a failed spawn under its error's text.
        restartsByReason = (state.restartsByReason ?? [:]).reduce(into: [:]) { $0[RestartCause(text: $1.key).reason, default: 0] += $1.value }
        let deploys: [OperationOutcome: Int] = (state.deploysByOutcome ?? [:]).reduce(into: [:]) { counts, entry in
            if let outcome = OperationOutcome(rawValue: entry.key) { counts[outcome, default: 0] += entry.value }
        }
        releases.restore(state: state.releaseState, deploysByOutcome: deploys)
        slots = try state.slots.sorted { $0.index < $1.index }.map { s in
            let slot = Slot(index: s.index, spec: s.spec.spec)
            slot.generation = s.generation
            slot.restarts = s.restarts
            slot.lastRestartReason = s.lastRestartReason.map(RestartCause.init(text:))
            let w = s.worker
            let worker = Worker(
                slot: w.slot, generation: w.generation, process: SpawnedProcess(pid: w.pid, pidfd: w.pidfd), spec: w.spec.spec,
                startedAt: .nanoseconds(w.startedAtNanos), startedAtWall: w.startedAtWall)
            worker.state = .ready
            worker.readyAt = w.readyAtNanos.map { .nanoseconds($0) }
            worker.notifyFD = w.notifyFD
            worker.notifyPath = w.notifyPath
            worker.outputFD = w.outputFD
            worker.statusText = w.statusText
            worker.watchdogInterval = w.watchdogNanos.map { .nanoseconds($0) }
            try watch(worker)
            slot.current = worker
            return slot
        }
        performOperations(operations.startUpFinished())
        notifier.ready(status: summary)
        lastStatusLine = summary
        logger.info("upgrade: resumed \(slots.count) workers in the new image", metadata: ["pid": .stringConvertible(getpid())])
        if let client = state.clientFD {
            control?.adoptClient(client)?.finish(.success("upgrade finished: pid \(getpid()) now runs \(options.executable); \(slots.count) workers kept"))
        }
        // A worker that exited during the execve is still a zombie: handle it now.
        for slot in slots { if let w = slot.current { workerPidfdReadable(w) } }
    }
}
