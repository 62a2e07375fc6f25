import BatonCore
import BatonSystem
import Glibc

/// An orphan's drain when its own process is not all of it. A re-audit: the take-over of a
/// worker behind a shell without `exec` logged "orphaned worker drained" 1 ms after the stop
/// signal (the shell died of it at once), while its app drained unsupervised; a helper of its
/// group that ignored SIGTERM was never killed and held the port after baton stopped, so the
/// next `baton serve` failed. A running baton's own workers are waited for the same way
/// (``awaitsItsGroup(_:)``).
extension Supervisor {
    /// Whether `orphan`, whose own process exited, leaves live processes of its group: each is
    /// held by its pidfd and the orphan counts as gone once they all are (looked at every
    /// 100 ms; SIGKILLed at the stop timeout with it). Its group id is safe to find them by:
    /// the kernel gives no new process a pid that is a live group's id.
    func awaitsOrphanGroup(_ orphan: OrphanWorker) -> Bool {
        // Only in its drain (the stop signal went to its group, the stop timeout bounds it).
        guard orphan.killTimer != nil else { return false }
        if orphan.groupLeft == nil {
            let members = host.processes.groupMembers(orphan.pid).filter { $0 != orphan.pid }
            orphan.groupLeft = members.compactMap { pid in (try? host.openPidfd(of: pid)).map { ChildProcess(pid: pid, pidfd: OwnedDescriptor($0)) } }
            guard !(orphan.groupLeft ?? []).isEmpty else { return false }
            loop.unregister(fd: orphan.pidfd)
            logger.info(
                "orphaned worker's own process exited; waiting for the rest of its group (pids \(members.map(String.init).joined(separator: ", ")))",
                metadata: ["slot": .stringConvertible(orphan.slot), "pid": .stringConvertible(orphan.pid)])
        }
        orphan.groupLeft?.removeAll { process in
            guard CBatonLinuxShim.hasExited(pidfd: process.pidfd) else { return false }
            process.close()
            return true
        }
        guard !(orphan.groupLeft ?? []).isEmpty else { return false }
        loop.schedule(after: .milliseconds(100)) { [unowned self] in
            guard self.takeOver.orphans.contains(where: { $0 === orphan }) else { return }
            self.orphanExited(orphan)
        }
        return true
    }

    /// `[stop] timeout` passed in `orphan`'s drain: SIGKILL to it, or to what is left of its group.
    func orphanStopTimedOut(_ orphan: OrphanWorker, after timeout: Duration) {
        let left = (orphan.groupLeft ?? []).filter { !CBatonLinuxShim.hasExited(pidfd: $0.pidfd) }
        guard !CBatonLinuxShim.hasExited(pidfd: orphan.pidfd) || !left.isEmpty else { return }
        let what =
            left.isEmpty ? "orphaned worker" : "the rest of the orphaned worker's group (pids \(left.map { String($0.pid) }.joined(separator: ", ")))"
        logger.warning(
            "\(what) still running \(Units.formatDuration(timeout)) after \(config.stop.signalName): SIGKILL", metadata: ["pid": .stringConvertible(orphan.pid)]
        )
        orphan.killed = true
        signalOrphan(orphan, SIGKILL)
        for process in left { host.signal(pidfd: process.pidfd, SIGKILL) }
    }

    /// `pid` holds the dead baton's socket in the process group of one of its recorded workers
    /// whose own process is gone (a shell without `exec` that died of the stop signal, its app
    /// left draining): drained as that worker would have been, the stop signal unless that
    /// baton had sent it, SIGKILL at the stop timeout (a re-audit: such a process was taken for
    /// a stray "that left its worker's" group, its 25 s drain ran past the 10 s stop timeout
    /// and a helper of the group held the socket until this baton stopped). Killed at stop too.
    func adoptGroupMember(pid: pid_t, startTime: UInt64, of worker: InstanceRecord.WorkerRecord, record: InstanceRecord) {
        guard let process = openStillRunning(pid: pid, startTime: startTime) else { return }
        takeOver.strays.append((process, startTime))
        let timeout = config.stop.timeout
        let told = worker.draining == true
        logger.warning(
            "pid \(pid) holds a socket the previous baton pid \(record.pid) listened on, in the process group of its worker pid \(worker.pid) (slot \(worker.slot)), whose own process is gone: drained as that worker's (\(told ? "" : "\(config.stop.signalName) now, ")SIGKILL in \(Units.formatDuration(timeout)) unless it exits)"
        )
        if !told { host.signal(pidfd: process.pidfd, config.stop.signal) }
        loop.schedule(after: timeout) { [unowned self] in
            guard process.pidfd >= 0, !CBatonLinuxShim.hasExited(pidfd: process.pidfd) else { return }
            self.logger.warning("pid \(pid), of the previous baton's worker pid \(worker.pid)'s group, still running \(Units.formatDuration(timeout)): SIGKILL")
            self.host.signal(pidfd: process.pidfd, SIGKILL)
        }
    }
}
