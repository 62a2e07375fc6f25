import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc
import Logging

/// A worker a crashed baton left behind: it keeps serving on the shared
/// socket until the new baton's own workers are ready, then it is drained.
/// Its pidfd was opened by the new baton (it is not its child: readable when
/// it exits, whoever reaps it) and is owned until it is drained; the read end
/// of its output pipe, taken from it, is owned and relayed to baton's log
/// (``ProcessChannels``, as a worker's).
final class OrphanWorker: ProcessChannels {
    let slot: Int
    /// Its start time (with the pid, it names the process in this baton's own record).
    let startTime: UInt64
    /// The dead baton had told it to stop: a paced take-over drains it first.
    var wasDraining = false
    var killTimer: EventLoop.Token?
    /// SIGKILLed at the stop timeout: its exit is no drain.
    var killed = false
    /// Its own process exited while others of its group ran: those, held by their pidfds until
    /// they are gone (``Supervisor/awaitsOrphanGroup(_:)``).
    var groupLeft: [ChildProcess]?

    init(slot: Int, startTime: UInt64, process: ChildProcess) {
        self.slot = slot
        self.startTime = startTime
        super.init(process: process)
    }
}

/// The supervisor's take-over bookkeeping.
struct TakeOverState {
    /// The record of a previous baton found dead at start-up.
    var previous: InstanceRecord?
    /// Its workers still alive (same pid and start time), until drained.
    var orphans: [OrphanWorker] = []
    /// Sockets taken from them by pidfd_getfd, by fd name, until openListeners uses them.
    var taken: [String: Listener] = [:]
    /// Whether the orphans were told to stop.
    var draining = false
    /// The pace of a take-over that would not fit twice the workers (nil: no limit).
    var pace: TakeOverPace?
    /// Orphans gone since the take-over began.
    var orphansGone = 0
    /// The orphans' last memory samples (their trees), by pid: they hold memory of the
    /// budget's until they are gone.
    var memory: [pid_t: MemorySample] = [:]
    /// Processes of the dead baton's that hold its listening socket but are no workers: they
    /// left a worker's process group (a session of their own, or a group no orphan leads).
    /// Their pidfds, owned; SIGKILLed at the end of a stop, as baton's own escaped children.
    var strays: [(process: ChildProcess, startTime: UInt64)] = []
    /// Start times of live workers (read once per worker).
    var startTimes: [pid_t: UInt64] = [:]
    /// A write of `instance.json` is scheduled for the end of this loop turn.
    var recordPending = false
    /// Removed at a clean stop: no later write may bring it back.
    var recordForgotten = false
    /// The runtime directory's lock (``Supervisor/lockRuntimeDirectory(refuse:)``), and why it
    /// is not held, while that lasts (a status problem).
    var runtimeLock: LockFile?
    var runtimeLockTrouble: String?
    /// This baton's own record reached the file once: until then the file (if any) is the
    /// previous baton's.
    var recordWritten = false
}

/// Take-over after a crash outside systemd. Under systemd the sockets come
/// back from the socket unit or the FD store, and the cgroup kill stops the
/// old workers, so only the record (and the refusal of a second instance)
/// applies there.
extension Supervisor {
    var instancePath: String { runtimeDirectory + "/instance.json" }

    /// Refuses to start when the baton that wrote the record still runs (same
    /// pid and start time), or when a baton answers on the control socket (it runs, but
    /// its record is missing or stale: a runtime directory it could not write to);
    /// remembers the record of a dead one. Runs before anything shared (state, sockets)
    /// is touched: a dead baton's record names the listening sockets' inodes, and the live
    /// one's workers hold those too, so they must never be taken for its orphans.
    func checkPreviousInstance() throws {
        let (text, record) = readInstanceRecord()
        // A state audit: a damaged record after `kill -9` failed every start on `Address already in use`, unsaid.
        if let text, record == nil { logger.warning("\(instancePath) is unreadable (\(text.utf8.count) bytes): its baton's workers cannot be taken over") }
        if let record, isAnotherRunningBaton(record) {
            throw InstanceConflict(
                description: "baton for app \(record.app) is already running as pid \(record.pid) (runtime directory \(runtimeDirectory)); stop it first")
        }
        if Sockets.unixSocketAnswers(config.control.socket) {
            throw InstanceConflict(
                description:
                    "a baton is already running on control socket \(config.control.socket) (it answers): stop it first, or give this app a [control] socket of its own"
            )
        }
        guard let record else { return }
        if record.app != config.app.name {
            try ignoreOtherAppsRecord(record)
            return
        }
        takeOver.previous = record
        removeNotifySockets(of: record.pid)
    }

    /// Removes the notify sockets a dead baton left (`WorkerContract.notifySocketName`, or
    /// decimal from an older baton; sockets only): nothing else in the directory is touched.
    private func removeNotifySockets(of pid: pid_t) {
        let doomed = (Filesystem.entryNames(of: notifyDirectory) ?? []).filter { WorkerContract.isNotifySocketName($0, batonPID: pid) }
        for name in doomed {
            let path = notifyDirectory + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else { continue }
            unlink(path)
        }
        if !doomed.isEmpty { logger.info("removed \(doomed.count) notify socket(s) of the previous baton pid \(pid)") }
    }

    /// Finds the previous (dead) baton's workers that still run and takes its
    /// listening sockets from one of them: their fds 3.. in the record's order,
    /// each verified to be a listening socket on the recorded address.
    func adoptOrphans() {
        guard let record = takeOver.previous, takeOver.orphans.isEmpty else { return }
        // A mold of the dead baton still running was loading (a ready one exits at the end of
        // its channel): no worker, though it holds the sockets (a mold audit saw one taken over
        // as an orphaned worker, with a warning about its output pipe). This baton starts its own.
        for m in record.molds ?? [] {
            guard let mold = openStillRunning(pid: m.pid, startTime: m.startTime) else { continue }
            logger.warning("pid \(m.pid), a mold of the previous baton pid \(record.pid), still runs: SIGKILL (a new one starts when a worker must)")
            host.signalProcessAndGroup(pid: m.pid, pidfd: mold.pidfd, SIGKILL)
            mold.close()
        }
        for w in record.workers where host.processes.startTime(of: w.pid) == w.startTime {
            adoptOrphan(pid: w.pid, startTime: w.startTime, slot: w.slot, outputFD: w.outputFD)?.wasDraining = w.draining == true
        }
        adoptUnrecordedWorkers(of: record)
        guard !takeOver.orphans.isEmpty else { return }
        logger.info(
            "previous baton pid \(record.pid) is gone; its workers \(takeOver.orphans.map { String($0.pid) }.joined(separator: ",")) still run")
        for orphan in takeOver.orphans {
            for (i, l) in record.listeners.enumerated() where takeOver.taken[l.name] == nil {
                // Owned from the take: one that fails the check closes when the loop goes on.
                let socket: OwnedDescriptor
                do {
                    socket = try host.takeDescriptor(pidfd: orphan.pidfd, target: 3 + Int32(i))
                } catch {
                    logger.warning("cannot take \(l.address) from orphaned worker pid \(orphan.pid): \(error)")
                    continue
                }
                guard Sockets.isListeningStream(socket.rawValue), Sockets.localAddress(socket.rawValue) == l.address else {
                    logger.warning("fd \(3 + i) of orphaned worker pid \(orphan.pid) is not a socket listening on \(l.address)")
                    continue
                }
                takeOver.taken[l.name] = Listener(socket: socket, name: l.name, address: l.address)
                logger.info("took over \(l.address) from orphaned worker pid \(orphan.pid) of baton pid \(record.pid)")
            }
        }
    }

    /// Workers the dead baton spawned but had not written into its record yet (it died
    /// between the spawn and the write at the end of that loop turn) still share its
    /// listening sockets: every process holding one (by the recorded inode) that leads its
    /// own process group but not a session, as each worker does, was started after that
    /// baton, and is neither a recorded orphan nor inside one's tree, is adopted as an orphan
    /// (of no known slot). The other holders started after that baton and outside every
    /// orphan's process group left a worker's group (`setsid`): no workers, they are strays,
    /// killed when this baton stops (a crash audit: adopted, 8 `setsid sleep`s counted as
    /// orphans and let the take-over start every new worker at 95 % of a cgroup; left alone,
    /// they outlived every baton holding the port).
    private func adoptUnrecordedWorkers(of record: InstanceRecord) {
        var seen = Set(takeOver.orphans.map(\.pid) + (record.molds ?? []).map(\.pid))
        var holders: [pid_t] = []
        for inode in record.listeners.compactMap(\.inode) {
            for pid in host.processes.socketHolders(inode: inode) where pid != getpid() && !seen.contains(pid) {
                seen.insert(pid)
                holders.append(pid)
                guard host.processes.processGroup(of: pid) == pid, host.processes.session(of: pid) != pid,
                    !takeOver.orphans.contains(where: { host.processes.isInTree(pid, root: $0.pid) }),
                    let started = host.processes.startTime(of: pid), started >= record.startTime,
                    adoptOrphan(pid: pid, startTime: started, slot: -1, outputFD: WorkerContract.outputReaderFD) != nil
                else { continue }
                logger.warning(
                    "pid \(pid) holds a socket the previous baton pid \(record.pid) listened on, but its record does not name it (spawned just before that baton died): taken over as an orphaned worker"
                )
            }
        }
        let groups = Set(takeOver.orphans.map(\.pid))
        for pid in holders where !takeOver.orphans.contains(where: { $0.pid == pid }) {
            guard let group = host.processes.processGroup(of: pid), !groups.contains(group),
                let started = host.processes.startTime(of: pid), started >= record.startTime
            else { continue }
            if let worker = record.workers.first(where: { $0.pid == group }) {
                adoptGroupMember(pid: pid, startTime: started, of: worker, record: record)
            } else {
                adoptStray(pid: pid, startTime: started, of: record)
            }
        }
        // The dead baton's own strays, taken over from a baton before it (they started before it).
        for s in record.strays ?? [] where !takeOver.orphans.contains(where: { $0.pid == s.pid }) {
            guard !takeOver.strays.contains(where: { $0.process.pid == s.pid }), host.processes.startTime(of: s.pid) == s.startTime else {
                continue
            }
            adoptStray(pid: s.pid, startTime: s.startTime, of: record)
        }
    }

    /// Keeps a pidfd of the stray `pid` (still the process started at `startTime`), to kill at stop.
    private func adoptStray(pid: pid_t, startTime: UInt64, of record: InstanceRecord) {
        guard let stray = openStillRunning(pid: pid, startTime: startTime) else { return }
        takeOver.strays.append((stray, startTime))
        logger.warning(
            "pid \(pid) holds a socket the previous baton pid \(record.pid) listened on, outside every worker's process group (it left its worker's): not a worker; killed when baton stops"
        )
    }

    /// Adopts `pid` as an orphan of `slot` if it is still the process that started at
    /// `startTime`, relaying its output from its `outputFD`; returns it, or nil when it did not.
    @discardableResult
    private func adoptOrphan(pid: pid_t, startTime: UInt64, slot: Int, outputFD: Int32?) -> OrphanWorker? {
        guard let process = openStillRunning(pid: pid, startTime: startTime) else { return nil }
        let orphan = OrphanWorker(slot: slot, startTime: startTime, process: process)
        takeOver.orphans.append(orphan)
        if let outputFD { relayOutput(of: orphan, heldAt: outputFD) }
        return orphan
    }

    /// A pidfd of `pid`, owned from here (closed when dropped), if it is still the process
    /// that started at `startTime`: checked again with the pidfd open, so it names that same
    /// process, not a reused pid.
    func openStillRunning(pid: pid_t, startTime: UInt64) -> ChildProcess? {
        guard let pidfd = try? host.openPidfd(of: pid) else { return nil }
        let process = ChildProcess(pid: pid, pidfd: OwnedDescriptor(pidfd))
        return host.processes.startTime(of: pid) == startTime ? process : nil
    }

    /// Binds `address`; when workers of the previous baton still hold it and
    /// taking it from them failed, the error says so.
    func bindListener(_ address: ListenAddress) throws -> Listener {
        do {
            let group = try config.listen.socketGroup.map { name in
                do { return try host.groupID(name) } catch { throw DaemonError("[listen] socket_group: \(error)") }
            }
            return try Sockets.bind(address, mode: config.listen.socketMode, backlog: config.listen.backlog, group: group)
        } catch {
            guard !takeOver.orphans.isEmpty else { throw namingHolders(error, of: address) }
            let pids = takeOver.orphans.map { String($0.pid) }.joined(separator: ",")
            throw DaemonError("\(error): workers of the previous baton (pids \(pids)) still hold it, and taking it over failed")
        }
    }

    /// The new workers are all ready (or baton stops): the orphans get the stop
    /// signal on their process groups, SIGKILL after `stop.timeout`.
    func drainOrphans() {
        guard !takeOver.orphans.isEmpty, !takeOver.draining else { return }
        takeOver.draining = true
        for orphan in takeOver.orphans where orphan.killTimer == nil { drainOrphan(orphan) }
    }

    /// Tells one orphan to stop (its exit watched, SIGKILL after `stop.timeout`).
    func drainOrphan(_ orphan: OrphanWorker) {
        do {
            try loop.register(fd: orphan.pidfd, events: .readable) { [unowned self] _ in self.orphanExited(orphan) }
        } catch {
            logger.error(
                "cannot watch orphaned worker pid \(orphan.pid): \(error); its exit is looked for every \(Units.formatDuration(Self.orphanExitPoll))"
            )
            pollOrphanExit(orphan)
        }
        logger.info("draining orphaned worker", metadata: ["slot": .stringConvertible(orphan.slot), "pid": .stringConvertible(orphan.pid)])
        signalOrphan(orphan, config.stop.signal)
        let timeout = config.stop.timeout
        orphan.killTimer = loop.schedule(after: timeout) { [unowned self] in self.orphanStopTimedOut(orphan, after: timeout) }
    }

    /// Signals the orphan's process group while its leader still runs (the
    /// group id is the leader's pid; once the leader is gone, only the pidfd).
    func signalOrphan(_ orphan: OrphanWorker, _ sig: Int32) {
        guard !CBatonLinuxShim.hasExited(pidfd: orphan.pidfd) else { return }
        host.signalProcessAndGroup(pid: orphan.pid, pidfd: orphan.pidfd, sig)
    }

    /// How often baton looks for the exit of an orphan whose pidfd the loop could not watch.
    static let orphanExitPoll: Duration = .milliseconds(100)

    /// An orphan whose pidfd the loop could not watch: its exit is looked for every
    /// `orphanExitPoll` instead, so that it leaves the take-over (and a shutdown waiting for
    /// the orphans ends) as if its pidfd had turned readable.
    private func pollOrphanExit(_ orphan: OrphanWorker) {
        loop.schedule(after: Self.orphanExitPoll) { [unowned self] in
            guard self.takeOver.orphans.contains(where: { $0 === orphan }) else { return }
            if CBatonLinuxShim.hasExited(pidfd: orphan.pidfd) { self.orphanExited(orphan) } else { self.pollOrphanExit(orphan) }
        }
    }

    func orphanExited(_ orphan: OrphanWorker) {
        guard !awaitsOrphanGroup(orphan) else { return }
        // What its pipe still holds, up to its capacity (a backlog from the gap between the
        // two batons ends with its drain lines), then the reader goes.
        closeOutput(orphan, draining: WorkerContract.outputPipeCapacity)
        loop.unregister(fd: orphan.pidfd)
        orphan.process.close()  // the orphan is gone
        if let t = orphan.killTimer { loop.cancel(t) }
        takeOver.orphans.removeAll { $0 === orphan }
        takeOver.memory[orphan.pid] = nil
        takeOver.orphansGone += 1
        // One SIGKILLed at the stop timeout did not drain (a drain audit read "drained" after the SIGKILL).
        logger.info(
            orphan.killed ? "orphaned worker gone after its SIGKILL (requests in flight were cut)" : "orphaned worker drained",
            metadata: ["slot": .stringConvertible(orphan.slot), "pid": .stringConvertible(orphan.pid)])
        if takeOver.orphans.isEmpty { logger.info("take-over finished: every orphaned worker of the previous baton is gone") }
        recordInstance()
        // Its memory is free: a paced take-over starts the next slot.
        if takeOver.pace != nil { fillStartQueue() }
        finishShutdownIfDone()
    }

    /// Schedules a write of `instance.json` at the end of this turn of the loop:
    /// the workers started or exited in one turn (a start-up, a batch of exits)
    /// cost one write, not one each.
    func recordInstance() {
        guard !takeOver.recordPending, !takeOver.recordForgotten else { return }
        takeOver.recordPending = true
        loop.schedule(after: .zero) { [unowned self] in self.writeInstanceRecord() }
    }

    /// Writes `instance.json` now (replaced atomically through the port: a reader sees the
    /// old or the new record, never half of one; no fsync: it only has to outlive baton, not
    /// the host, and the runtime directory is usually tmpfs).
    func writeInstanceRecord() {
        takeOver.recordPending = false
        guard !takeOver.recordForgotten else { return }
        var workers: [InstanceRecord.WorkerRecord] = []
        var live: [pid_t: UInt64] = [:]
        for slot in slots {
            for w in slot.workers where w.state != .exited {
                guard let started = takeOver.startTimes[w.pid] ?? host.processes.startTime(of: w.pid) else { continue }
                live[w.pid] = started
                workers.append(
                    .init(
                        slot: slot.index, pid: w.pid, startTime: started, outputFD: WorkerContract.outputReaderFD,
                        draining: w.state == .draining ? true : nil))
            }
        }
        takeOver.startTimes = live
        // Orphans not yet drained still hold the sockets: a baton crashing now leaves them too,
        // those of no known slot included (left out, a crash audit saw one serve for good).
        for o in takeOver.orphans {
            var recorded =
                takeOver.previous?.workers.first(where: { $0.pid == o.pid })
                ?? .init(slot: o.slot, pid: o.pid, startTime: o.startTime, outputFD: WorkerContract.outputReaderFD)
            if o.killTimer != nil || o.wasDraining { recorded.draining = true }
            workers.append(recorded)
        }
        let strays = takeOver.strays.map { InstanceRecord.WorkerRecord(slot: -1, pid: $0.process.pid, startTime: $0.startTime) }
        let molds = moldBook.molds.filter { $0.state != .exited }.compactMap { m in
            host.processes.startTime(of: m.pid).map { InstanceRecord.WorkerRecord(slot: -1, pid: m.pid, startTime: $0) }
        }
        var record = InstanceRecord(
            app: config.app.name, pid: getpid(), startTime: host.processes.startTime(of: getpid()) ?? 0,
            listeners: listeners.map { .init(name: $0.name, address: $0.address, inode: Self.inode(of: $0.fd)) }, workers: workers,
            strays: strays.isEmpty ? nil : strays)
        record.molds = molds.isEmpty ? nil : molds
        guard let data = try? JSONEncoder().encode(record) else { return }
        do {
            try host.files.replace(instancePath, with: Array(data) + [0x0A])
            takeOver.recordWritten = true
        } catch {
            logger.warning("cannot write \(instancePath): \(error)")
            // The file still holds the previous baton's record, which this one has taken over
            // from: left there, it would make a later baton take this one's workers for that
            // dead baton's orphans. (This baton's own last record stays: older, but its own.)
            if !takeOver.recordWritten { host.files.remove(instancePath) }
        }
    }
}

extension Supervisor {
    /// The orphans still running, measured with the workers.
    var orphanPIDs: [pid_t] { takeOver.orphans.map(\.pid) }

    /// What the orphans hold of the budget, from their last samples: a take-over audit saw a
    /// deploy planned `surge, 2 slots at once` beside three orphans that preflight and status
    /// left out, and the workers' PSS reach 174 MiB of a 150 MiB budget.
    var orphansPSS: UInt64 { takeOver.orphans.compactMap { takeOver.memory[$0.pid]?.pss }.reduce(0, +) }

    /// `baton status` rows of the orphans: state `orphaned`, their slot in the previous
    /// baton (-1: one its record did not name), whose pid the release column names.
    func orphanRows(memory trees: [pid_t: MemorySample]) -> [WorkerStatus] {
        let previous = takeOver.previous.map { "previous baton pid \($0.pid)" } ?? "previous baton"
        return takeOver.orphans.map { orphan in
            let m = trees[orphan.pid]
            return WorkerStatus(
                slot: orphan.slot, pid: orphan.pid, state: orphan.killTimer == nil ? "orphaned" : "orphaned-draining", release: previous,
                generation: 0, rssBytes: m?.rss, pssBytes: m?.pss, ussBytes: m?.uss)
        }
    }

    /// The inode of descriptor `fd` (nil when fstat fails).
    static func inode(of fd: Int32) -> UInt64? {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_ino) : nil
    }
}
