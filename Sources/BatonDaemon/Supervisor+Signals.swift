import BatonCore
import BatonSystem
import Glibc

/// baton's signals, read from its signalfd on the loop: SIGCHLD reaps what no pidfd handler
/// owns, SIGTERM/SIGINT stop, SIGHUP reloads.
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
                logger.info("received \(sig == SIGTERM ? "SIGTERM" : "SIGINT"): stopping", metadata: ["from_pid": .stringConvertible(sender)])
                beginShutdown()
            case SIGHUP:
                logger.info("received SIGHUP: reload", metadata: ["from_pid": .stringConvertible(sender)])
                requestReload(waiter: nil)
            default: break
            }
        }
    }

    /// Reaps exited children that are not workers or probes (grandchildren
    /// re-parented to baton, the subreaper). Known children are left for their
    /// pidfd handlers, which still need the zombie to hold the pid.
    func reapStrays() {
        let known = supervisedPIDs
        var skipped = Set<pid_t>()
        // Under the registry's lock: a config parser spawned off the loop is
        // registered before it can show up here, and left to its spawner. (Safe:
        // nothing on the loop thread takes that lock again.)
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
                    handleKnownExitNow(pid)
                    continue
                }
                CBatonLinuxShim.reap(pid)
                logger.debug("reaped stray process", metadata: ["pid": .stringConvertible(pid)])
            }
        }
    }

    /// The children baton watches through their pidfds: every worker (whatever its role) and
    /// its probe, the molds, the upgrade check.
    var supervisedPIDs: Set<pid_t> {
        var known = Set(slots.flatMap { $0.workers.flatMap { w in [w.pid] + (w.probe.map { [$0.pid] } ?? []) } })
        if let check = upgrade.checkPID { known.insert(check) }
        known.formUnion(moldPIDs)
        return known
    }

    private func handleKnownExitNow(_ pid: pid_t) {
        if moldExitedNow(pid) { return }
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
