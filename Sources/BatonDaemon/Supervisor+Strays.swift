import BatonCore
import BatonSystem
import Glibc

/// Strays killed whole: a process that left its worker's group (``escapedChildren()``) may have
/// children of its own. A daemonize audit (`gunicorn --daemon`: the command exits 0 at once, its
/// master in a session of its own keeps the listening socket and forks workers) saw only the
/// master SIGKILLed: its 2 workers held the listening socket 10 s past baton's exit, and a
/// failed deploy left the whole daemon serving beside the old workers.
extension Supervisor {
    /// SIGKILL to `pid`, a process baton does not supervise, to every process of its tree
    /// (/proc children, walked again for what forked before its parent's SIGKILL landed), and
    /// to each group one of them leads. Each killed process is held by its pidfd until it is
    /// gone (``killedStrays``): no stray meanwhile, and waited for at the end of a stop.
    /// Returns the pids killed.
    @discardableResult
    func killUnsupervised(_ pid: pid_t) -> [pid_t] {
        let known = supervisedPIDs
        var killed: [pid_t] = []
        var seen = Set<pid_t>()
        for _ in 0..<8 {
            let fresh = ([pid] + killed).flatMap { host.processes.tree(of: $0) }.filter { !known.contains($0) && seen.insert($0).inserted }
            if fresh.isEmpty { break }
            for member in fresh {
                guard host.processes.startTime(of: member) != nil, let fd = try? host.openPidfd(of: member) else { continue }
                let process = ChildProcess(pid: member, pidfd: OwnedDescriptor(fd))
                if host.processes.processGroup(of: member) == member { host.signalGroup(member, SIGKILL) }
                host.signal(pidfd: process.pidfd, SIGKILL)
                killedStrays.append(process)
                killed.append(member)
            }
        }
        return killed
    }

    /// The pids of the strays killed that are not gone yet (those gone are let go).
    func liveKilledStrays() -> Set<pid_t> {
        killedStrays.removeAll { process in
            guard CBatonLinuxShim.hasExited(pidfd: process.pidfd) else { return false }
            process.close()
            return true
        }
        return Set(killedStrays.map(\.pid))
    }

    /// A worker that never got ready exited or was killed: its slot gives it up, and with it
    /// what escaped from it (``cameFrom(_:_:outputInode:)``), reported adopted already or not: each is
    /// SIGKILLed with its tree. An apps audit: a daemon reported adopted as another new worker's
    /// failure was handled was left out when the rollback stopped its own worker, and the
    /// failed release's daemon answered requests beside the old workers. Returns the pids killed.
    /// `failedStart`: it never got ready; else it ran a release that failed (a deploy rolled back).
    /// `outputInode`: its output pipe's, read before its exit closed it.
    func killEscapees(of worker: Worker, failedStart: Bool, outputInode: UInt64?) -> [pid_t] {
        var killed: [pid_t] = []
        for _ in 0..<4 {
            let escaped = escapedChildren().filter { cameFrom(worker, $0, outputInode: outputInode) }
            if escaped.isEmpty { break }
            for pid in escaped { killed += killUnsupervised(pid) }
        }
        guard !killed.isEmpty else { return [] }
        let why = failedStart ? "failed its start" : "ran a release that failed"
        logger.warning(
            "worker \(worker.pid) \(why): SIGKILL to the \(Self.processes(killed)) that left its process group: its slot gives them up with it",
            metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
        return killed
    }

    /// Whether `pid`, a process that left its worker's group, came from `worker`, by the
    /// environment it started with: `LISTEN_PID` of the worker's pid (a fork keeps it; a
    /// program exec'd with it too), or, without any `LISTEN_PID`, the worker's `BATON_SLOT`
    /// and a start after the worker's. A re-audit: attributed by start time alone, a slot's
    /// failed start SIGKILLed another slot's `setsid` helpers, one of a worker already ready.
    /// Unknown (the environment unreadable, a mold's fork): not its.
    ///
    /// An apps re-audit: one that holds the worker's output pipe is its, whatever its
    /// environment (a daemon exec'd by `env -i` was spared); one told by its slot alone must run
    /// the worker's release and have started when no other live worker of the slot ran it (the
    /// helpers a serving worker of another release started without LISTEN_PID were SIGKILLed).
    func cameFrom(_ worker: Worker, _ pid: pid_t, outputInode: UInt64?) -> Bool {
        if let outputInode, host.processes.pipes(of: pid).contains(outputInode) { return true }
        guard let environment = host.processes.environment(of: pid) else { return false }
        if let listenPID = environment.first(where: { $0.hasPrefix("LISTEN_PID=") }) { return listenPID == "LISTEN_PID=\(worker.pid)" }
        guard environment.contains("BATON_SLOT=\(worker.slot)"), environment.contains("BATON_RELEASE=\(worker.spec.release)"),
            let since = worker.startTicks, let started = host.processes.startTime(of: pid), started >= since
        else {
            return false
        }
        let others = slots[worker.slot].workers.filter { $0 !== worker && $0.spec.release == worker.spec.release }
        return !others.contains { other in other.startTicks.map { $0 <= started } ?? true }
    }

    /// The children of baton still in the group of `worker`, whose pidfd turned readable (they
    /// were its own: it exited and they were handed to baton), none while it runs.
    func orphansInGroup(of worker: Worker) -> [pid_t] {
        CBatonLinuxShim.hasExited(pidfd: worker.pidfd) ? groupChildren(of: worker) : []
    }

    /// `verdict`, saying the worker daemonized when it exited 0 during its start and processes
    /// that left its group (`escapees`, killed) ran on: baton saw nothing else of it but
    /// "exited during start".
    static func sayingDaemonized(_ verdict: WorkerExit, exit: CBatonLinuxShim.Exit, escapees: [pid_t]) -> WorkerExit {
        guard case .exited(0) = exit, !escapees.isEmpty else { return verdict }
        let text =
            "exited 0 during start, leaving \(processes(escapees)) running (SIGKILLed): did it daemonize (--daemon, fork to background)? baton needs the worker to stay in the foreground"
        switch verdict {
        case .replacementFailed: return .replacementFailed(reason: text)
        case .slotFailed(_, let countsUptime): return .slotFailed(reason: RestartCause(.crash, detail: text), countsUptime: countsUptime)
        case .drained, .newReleaseFailed: return verdict
        }
    }

    /// "1 process (pid 7)", "3 processes (pid 7, 8, 9)".
    static func processes(_ pids: [pid_t]) -> String {
        let n = pids.count
        let shown = pids.prefix(10).map(String.init).joined(separator: ", ") + (n > 10 ? " and \(n - 10) more" : "")
        return "\(n) process\(n == 1 ? "" : "es") (pid \(shown))"
    }

    /// At the end of a stop, once every worker is gone: SIGKILL each escaped child and the
    /// previous baton's strays, each with its tree, as systemd's final kill does to what is
    /// left of a service; then waits for them to be gone (at most `strayExitWait`), so none
    /// holds the listening sockets once baton says `stopped`.
    func killEscapedChildren() {
        for (stray, _) in takeOver.strays where !CBatonLinuxShim.hasExited(pidfd: stray.pidfd) {
            logger.warning("pid \(stray.pid), a stray of the previous baton holding its socket, is still running at stop: SIGKILL")
            host.signalProcessAndGroup(pid: stray.pid, pidfd: stray.pidfd, SIGKILL)
            killUnsupervised(stray.pid)
        }
        takeOver.strays = []
        // Rounds: a process killed hands the children it forked meanwhile to baton.
        for _ in 0..<4 {
            let escaped = escapedChildren()
            if escaped.isEmpty { break }
            for pid in escaped {
                let killed = killUnsupervised(pid)
                let tree = killed.count > 1 ? " with its tree, \(Self.processes(killed))" : ""
                logger.warning("pid \(pid) left its worker's process group and is still running at stop: SIGKILL\(tree)")
            }
        }
        let deadline = monotonicNow() + Self.strayExitWait
        while !liveKilledStrays().isEmpty, monotonicNow() < deadline {
            var pfd = pollfd(fd: killedStrays[0].pidfd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 20)
        }
        if !killedStrays.isEmpty {
            logger.warning(
                "\(Self.processes(killedStrays.map(\.pid))) SIGKILLed at stop still not gone after \(Units.formatDuration(Self.strayExitWait))")
        }
    }

    /// How long the end of a stop waits for the strays it SIGKILLed to be gone.
    static let strayExitWait = Duration.seconds(2)
}
