import BatonCore
import BatonSystem
import Glibc

/// A worker's stop and drain: the stop signal, the SIGKILL at `[stop] timeout`, the wait for
/// the rest of its group; and the drain as an operation reports it: a clean drain, or one that
/// did not end cleanly (SIGKILLed at `[stop] timeout`, killed from elsewhere, exited non-zero),
/// which the operation's final line and history name too.
extension Supervisor {
    /// An old worker finished draining.
    func drainedWorkerExited(_ worker: Worker, slot: Slot, exit: CBatonLinuxShim.Exit = .exited(0)) {
        if let op = operation, worker.stopReason != .abandoned {
            let took = Units.formatElapsed(loop.now() - (worker.drainStartedAt ?? loop.now()))
            // A drain cut short by SIGKILL is not a drain: the client's log must say requests may have been cut.
            if config.stop.signal == SIGKILL {
                // `[stop] signal = "SIGKILL"` drains nothing (a reload audit read "drained in 1ms").
                op.report("slot \(slot.index): pid \(worker.pid) stopped with SIGKILL ([stop] signal: no drain; requests in flight were cut)")
            } else if worker.drainCutShort, let left = worker.groupLeftAtKill {
                // Its own process had exited: what held the drain was the rest of its group (a
                // re-audit: "pid … still running" of a pid gone 8 s before, held by a helper).
                op.report(
                    "slot \(slot.index): pid \(worker.pid) exited, and the rest of its group (\(left)) was still running \(Units.formatDuration(config.stop.timeout)) after \(config.stop.signalName): SIGKILLed after \(took) (requests in flight may have been cut)"
                )
                op.cutDrains.append("slot \(slot.index): pid \(worker.pid)'s group (\(left)) SIGKILLed at the stop timeout")
            } else if worker.drainCutShort {
                op.report(
                    "slot \(slot.index): pid \(worker.pid) still running \(Units.formatDuration(config.stop.timeout)) after \(config.stop.signalName): SIGKILLed after \(took) (requests in flight were cut)"
                )
                op.cutDrains.append("slot \(slot.index): pid \(worker.pid) SIGKILLed at the stop timeout")
            } else if case .signaled(let signal) = exit, signal != config.stop.signal {
                // Nor is a kill from elsewhere (kill -9, the OOM killer: a re-audit saw "drained").
                op.report("slot \(slot.index): pid \(worker.pid) was killed while it drained (\(exit), after \(took); requests in flight were cut)")
                op.cutDrains.append("slot \(slot.index): pid \(worker.pid) \(exit)")
            } else if case .exited(let code) = exit, code != 0 {
                // Nor is a non-zero exit: the app says its drain failed (a drain audit: the demo
                // worker's exit 1 at its own drain timeout, 20 s requests cut, read "drained in 3.01s").
                op.report(
                    "slot \(slot.index): pid \(worker.pid) exited with code \(code) while it drained, after \(took): not a clean drain (requests in flight may have been cut)"
                )
                op.cutDrains.append("slot \(slot.index): pid \(worker.pid) exited with code \(code)")
            } else if !worker.groupFailures.isEmpty {
                let failures = worker.groupFailures.joined(separator: ", ")
                op.report(
                    "slot \(slot.index): pid \(worker.pid) drained in \(took), but its group's \(failures) while it drained: not a clean drain (requests in flight may have been cut)"
                )
                op.cutDrains.append("slot \(slot.index): pid \(worker.pid)'s group: \(failures)")
            } else {
                op.report("slot \(slot.index): pid \(worker.pid) drained in \(took)")
            }
        }
        if slot.draining.isEmpty { rolloutEvent { $0.oldWorkerExited(slot: slot.index) } }
    }

    /// The children of baton in the group of `worker` but itself (zombies included): once its
    /// own process exited, its children were handed to baton (the subreaper); the zombie holds
    /// the group id, so no other group can take it meanwhile.
    func groupChildren(of worker: Worker) -> [pid_t] {
        host.processes.children(of: getpid()).filter { $0 != worker.pid && host.processes.processGroup(of: $0) == worker.pid }
    }

    /// The live ones of ``groupChildren(of:)``.
    func liveGroupChildren(of worker: Worker) -> [pid_t] { groupChildren(of: worker).filter { host.processes.startTime(of: $0) != nil } }

    /// Whether `worker`, draining, exited while other processes of its group still run, and
    /// baton waits for them (polled every 100 ms) before it handles the exit: the group got the
    /// stop signal too, and those processes may be what serves. A habits audit: a command
    /// behind a shell without `exec` (`sh -c "python3 app.py"`, a wrapper script, a pipeline)
    /// lost its drain: the shell died of SIGTERM at once, baton SIGKILLed the rest of its group
    /// (the app, still answering requests: 2 of 6 failed) and said "drained in 2ms". systemd
    /// waits for every process of the unit the same way. The stop timeout still ends the wait
    /// (SIGKILL to the group).
    func awaitsItsGroup(_ worker: Worker) -> Bool {
        guard worker.state == .draining, !worker.drainCutShort, config.stop.signal != SIGKILL,
            host.exitStatus(pidfd: worker.pidfd, reap: false) != nil
        else { return false }
        collectGroupExits(worker)
        let others = liveGroupChildren(of: worker)
        guard !others.isEmpty || !worker.groupHeld.isEmpty else { return false }
        // Each held by its pidfd, and left to this wait, not to the strays' reaper: how it ends
        // is the drain's (a re-audit: in `app | cat`, cat died of SIGTERM, the app of a broken
        // pipe with 4 of 6 requests, and baton said "drained in 110ms").
        for pid in others where !worker.groupHeld.contains(where: { $0.pid == pid }) {
            if let fd = try? host.openPidfd(of: pid) { worker.groupHeld.append(ChildProcess(pid: pid, pidfd: OwnedDescriptor(fd))) }
        }
        if !worker.awaitingGroup {
            worker.awaitingGroup = true
            loop.unregister(fd: worker.pidfd)
            logger.info(
                "worker's own process exited while draining; waiting for the rest of its group (pids \(others.map(String.init).joined(separator: ", ")))",
                metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
        }
        // One poll at a time (a stray's exit calls this too).
        guard worker.groupPoll == nil else { return true }
        let poll = loop.schedule(after: .milliseconds(100)) { [unowned self, unowned worker] in
            worker.groupPoll = nil
            self.workerPidfdReadable(worker)
        }
        worker.groupPoll = poll
        worker.timers.append(poll)
        return true
    }

    /// Reaps the processes of `worker`'s group it holds that exited, and keeps those that did
    /// not end as a drain does (an exit code, a signal but the stop signal) for its report.
    func collectGroupExits(_ worker: Worker) {
        worker.groupHeld.removeAll { process in
            // Its status, once waitable: a pidfd turns readable a moment before a process of
            // many threads can be waited for (a repeated test: the exit code was lost 1 run in
            // 7 under load, and the drain read clean). One gone from /proc was reaped elsewhere.
            guard let exit = collectExit(pid: process.pid, pidfd: process.pidfd) else {
                guard !host.processes.exists(process.pid) else { return false }
                process.close()
                return true
            }
            switch exit {
            case .exited(0): break
            case .signaled(let signal) where signal == config.stop.signal: break
            default: worker.groupFailures.append("pid \(process.pid) ended with \(exit)")
            }
            process.close()
            return true
        }
    }

    // MARK: - Stopping

    /// Graceful stop: the stop signal to the group (and to the worker if it left it), then
    /// SIGCONT, as systemd sends it (a systemd audit: a worker stopped by SIGSTOP acted on no
    /// stop signal, and held `systemctl stop` for the whole stop timeout), SIGKILL after
    /// `stop.timeout`.
    func stopWorker(_ worker: Worker, reason: StopReason) {
        guard worker.state != .exited else { return }
        if worker.state == .draining { return }
        worker.state = .draining
        worker.drainStartedAt = loop.now()
        worker.stopReason = worker.stopReason ?? reason
        host.signalWorker(pid: worker.pid, pidfd: worker.pidfd, config.stop.signal)
        if config.stop.signal != SIGKILL { host.signalWorker(pid: worker.pid, pidfd: worker.pidfd, SIGCONT) }
        killAfterStopTimeout(worker)
    }

    /// A drain always ends: SIGKILL to the group `stop.timeout` after the stop signal,
    /// unless the worker exited by then.
    func killAfterStopTimeout(_ worker: Worker) {
        let timeout = config.stop.timeout
        worker.timers.append(
            loop.schedule(after: timeout) { [unowned self, unowned worker] in
                guard worker.state != .exited else { return }
                if worker.awaitingGroup {
                    let left = self.liveGroupChildren(of: worker).map { "pid \($0)" + (self.host.processes.commandName(of: $0).map { " \($0)" } ?? "") }
                    worker.groupLeftAtKill = left.isEmpty ? "nothing left" : left.joined(separator: ", ")
                    self.logger.warning(
                        "worker's own process exited; the rest of its group (\(worker.groupLeftAtKill ?? "")) still running \(Units.formatDuration(timeout)) after \(self.config.stop.signalName): SIGKILL",
                        metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
                } else {
                    self.logger.warning(
                        "worker still running \(Units.formatDuration(timeout)) after \(self.config.stop.signalName): SIGKILL",
                        metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
                }
                worker.drainCutShort = true
                self.kill(worker)
            })
    }

    /// SIGKILL to the worker's whole group.
    func kill(_ worker: Worker) {
        host.signalGroup(worker.pid, SIGKILL)
        host.signal(pidfd: worker.pidfd, SIGKILL)
    }
}
