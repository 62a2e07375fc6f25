import BatonCore
import BatonSystem
import Glibc

/// baton's signals, read from its signalfd on the loop: SIGCHLD reaps what no pidfd handler
/// owns, SIGTERM/SIGINT stop, SIGHUP reloads; the others it reads are logged and ignored
/// (`CBatonLinuxShim.supervisorSignals`).
extension Supervisor {
    /// Reads every pending signal from the signalfd and acts on it.
    func handleSignals() {
        while true {
            var sender: pid_t = 0
            let sig = CBatonLinuxShim.readSignal(signalFD, sender: &sender)
            if sig <= 0 { return }
            switch sig {
            case SIGCHLD: reapStrays()
            case SIGTERM, SIGINT:
                let name = sig == SIGTERM ? "SIGTERM" : "SIGINT"
                // A habits audit: a second Ctrl-C logged "stopping" again and changed nothing.
                let again = phase == .stopping ? ": already stopping, \(stoppingWorkersLine)" : ": stopping"
                logger.info("received \(name)\(again)", metadata: ["from_pid": .stringConvertible(sender)])
                beginShutdown()
            case SIGHUP:
                logger.info("received SIGHUP: reload", metadata: ["from_pid": .stringConvertible(sender)])
                requestReload(waiter: nil)
            default:
                guard let held = ignoredSignalWarnings.admit(now: loop.now()) else { continue }
                let more = held > 0 ? " (\(held) more ignored signals held back since the last one)" : ""
                let scale = sig == SIGTTIN || sig == SIGTTOU ? "; the number of workers is [app] workers" : ""
                logger.warning(
                    "received \(CBatonLinuxShim.ignoredSignalName(sig)): ignored (baton stops on SIGTERM or SIGINT and reloads on SIGHUP\(scale))\(more)",
                    metadata: ["from_pid": .stringConvertible(sender)])
            }
        }
    }

    /// What a stop under way still waits for, and when it ends it: the workers' stop timeout
    /// (SIGKILL), counted from each one's stop.
    var stoppingWorkersLine: String {
        let draining = liveWorkerPIDs.count
        guard draining > 0 else { return "nothing left to drain" }
        let timeout = Units.formatDuration(config.stop.timeout)
        return "\(draining) worker\(draining == 1 ? "" : "s") draining (SIGKILL after [stop] timeout \(timeout) from each one's stop)"
    }

    /// The threads that reap exited children (one: reaps are rare, and each may be slow).
    static let reaperPool = OffloadPool(maxThreads: 1)

    /// How the child behind `pidfd` ended (nil while it runs), read without reaping it; its
    /// zombie is reaped on the reaper's thread. The kernel frees an exited process's `/proc`
    /// entries in the `waitid` that reaps it: on a busy host (a config audit, under load) that
    /// call took 1.9 to 18.5 s on the loop, and baton served nothing meanwhile.
    func collectExit(pid: pid_t, pidfd: Int32) -> CBatonLinuxShim.Exit? {
        guard let exit = host.exitStatus(pidfd: pidfd, reap: false) else { return nil }
        reapOffLoop(pid)
        return exit
    }

    /// Hands the zombie `pid` to the reaper's thread; then looks for strays again (a zombie
    /// waiting for its reap hides the exited children behind it from the peek).
    private func reapOffLoop(_ pid: pid_t) {
        guard let reap = host.reaper(of: pid) else { return }
        loop.offload(on: Self.reaperPool, reap) { [weak self] _ in self?.reapStrays() }
    }

    /// Reaps exited children that are not workers or probes (grandchildren
    /// re-parented to baton, the subreaper), on the reaper's thread. Known children are
    /// left for their pidfd handlers, which still need the zombie to hold the pid.
    func reapStrays() {
        let known = supervisedPIDs
        var skipped = Set<pid_t>()
        var knownExited: [pid_t] = []
        var strays: [pid_t] = []
        // Under the registry's lock: a config parser spawned off the loop is
        // registered before it can show up here, and left to its spawner. Nothing
        // else runs under it: the exits of known children are handled once it is let go
        // (their handlers read the registry too: `escapedChildren`).
        SelfReapedChildren.withRegistered { others in
            while true {
                let pid = CBatonLinuxShim.peekExitedChild()
                if pid <= 0 || skipped.contains(pid) { return }
                if others.contains(pid) {
                    skipped.insert(pid)
                    continue
                }
                if known.contains(pid) {
                    // Handled by its pidfd; peeking again would return it forever.
                    skipped.insert(pid)
                    knownExited.append(pid)
                    continue
                }
                skipped.insert(pid)
                strays.append(pid)
            }
        }
        for pid in strays {
            logger.debug("reaping stray process", metadata: ["pid": .stringConvertible(pid)])
            reapOffLoop(pid)
        }
        for pid in knownExited { handleKnownExitNow(pid) }
        stopAbandonedSpawns()
    }

    /// Live children of baton that it does not supervise: processes a worker (or its probe, or
    /// a mold) started that left its process group (`setsid`, `setpgid`) and were handed to
    /// baton, the subreaper, when their parent exited. The group signals that stop a worker
    /// miss them; left alone they would outlive baton holding the listening sockets, and the
    /// next `baton serve` would fail on "Address already in use". One still in the group of a
    /// live worker, probe (a dying one's included) or mold is not: it dies with that group (a
    /// pid-1 audit: an orphan that never left its worker's group was listed as a stray, and a
    /// deploy's last line counted 4 where 2 had called `setsid`).
    /// Nor is one of a group SIGKILLed as its leader exited, for `dyingGroupGrace` (a logs
    /// audit, 3 of 10 crashes: "left its worker's process group" for a child dying with it).
    func escapedChildren() -> [pid_t] {
        let known = supervisedPIDs.union(liveKilledStrays())
        let now = loop.now()
        dyingGroups = dyingGroups.filter { now - $0.value < Self.dyingGroupGrace }
        return SelfReapedChildren.withRegistered { others in
            host.processes.children(of: getpid()).filter { pid in
                guard !known.contains(pid), !others.contains(pid), host.processes.startTime(of: pid) != nil else { return false }
                return host.processes.processGroup(of: pid).map { !known.contains($0) && dyingGroups[$0] == nil } ?? true
            }
        }
    }

    /// How long the members of a worker group SIGKILLed as its leader exited count as dying.
    static let dyingGroupGrace = Duration.seconds(5)

    /// Logs each escaped child once, when it is first seen (after a process exited): it runs on
    /// until baton stops, as a process of a service's cgroup does under systemd. It is not
    /// said to be the exiting worker's: its parent, not its worker, is what exited (an audit
    /// saw "outlived it" for strays of workers that were alive and ready). `baton status`
    /// lists them.
    func reportEscapedChildren() {
        // Nothing after `stopped`: every stray was killed before it (a daemonize audit saw
        // "adopted … until baton stops" logged after it).
        guard !stopFinished else { return }
        let escaped = escapedChildren()
        reportedEscapees.formIntersection(escaped)
        for pid in escaped where !reportedEscapees.contains(pid) {
            reportedEscapees.insert(pid)
            logger.warning(
                "pid \(pid) left its worker's process group and its parent exited, so baton adopted it: it is not supervised and keeps running (it may hold the listening sockets) until baton stops, which kills it"
            )
        }
    }

    /// The children baton watches through their pidfds: every worker (whatever its role) and
    /// its probe, the molds, the upgrade check.
    var supervisedPIDs: Set<pid_t> {
        var known = Set(slots.flatMap { $0.workers.flatMap { w in [w.pid] + (w.probe.map { [$0.pid] } ?? []) + w.groupHeld.map(\.pid) } })
        known.formUnion(dyingProbes.map(\.pid))
        if let check = upgrade.checkPID { known.insert(check) }
        known.formUnion(moldPIDs)
        return known
    }

    private func handleKnownExitNow(_ pid: pid_t) {
        if moldExitedNow(pid) { return }
        // A dying probe's pidfd handler collects it.
        if dyingProbes.contains(where: { $0.pid == pid }) { return }
        for slot in slots {
            for worker in slot.workers {
                if worker.pid == pid {
                    workerPidfdReadable(worker)
                    return
                }
                if let probe = worker.probe, probe.pid == pid {
                    probeExited(worker)
                    return
                }
            }
        }
    }
}
