import BatonCore
import BatonSystem
import Glibc
import Logging

/// What a booting worker costs the ones that serve: its boot starts at a lower CPU priority
/// (`[readiness] boot_nice`) and gets baton's back once it is ready, and the CPU its boot
/// used sets how many may boot at once (`BootBudget`).
extension Supervisor {
    /// How much nicer than baton a worker spawned now starts: `boot_nice`, or 0 when baton
    /// could not give the priority back (not root, RLIMIT_NICE too low); said once in the log.
    func bootNice() -> Int32 {
        let nice = Int32(config.readiness.bootNice)
        guard nice > 0 else { return 0 }
        guard ProcessPriority.canLower(to: ProcessPriority.current) else {
            if !bootNiceRefusalLogged {
                bootNiceRefusalLogged = true
                logger.info(
                    "readiness.boot_nice = \(nice) ignored: baton may not give a worker its priority back (needs CAP_SYS_NICE, or an RLIMIT_NICE that allows it)"
                )
            }
            return 0
        }
        // A CPU audit: under `nice -n 19` boots ran at baton's own priority, and the log said
        // "baton's priority back" of a priority never lowered.
        let room = max(0, 19 - ProcessPriority.current)
        guard room > 0 else {
            if !bootNiceRefusalLogged {
                bootNiceRefusalLogged = true
                logger.info("readiness.boot_nice = \(nice) ignored: baton runs at nice \(ProcessPriority.current), the lowest priority already")
            }
            return 0
        }
        return min(nice, room)
    }

    /// A worker or mold spawned just now (it runs its own program) boots `nice` nicer than
    /// baton (nothing when 0), its whole tree (threads it started already included). It stays
    /// in baton's session, so its threads weigh against the serving workers' (the kernel
    /// weighs sessions against each other first: docs/ARCHITECTURE.md, "Platform facts").
    func startNicer(_ child: some BootingChild, by nice: Int32) {
        guard nice > 0 else { return }
        if !host.setPriority(tree: child.pid, nice: min(19, ProcessPriority.current + nice)) {
            logger.warning("could not make the booting \(child.kind) nicer (boot_nice)", metadata: child.logMetadata)
        }
        child.bootNice = nice
    }

    /// A worker became ready after `bootTime`: its boot's CPU share goes into the boot budget,
    /// and a worker that started nicer gets baton's priority back on every thread of its tree.
    func workerBooted(_ worker: Worker, bootTime: Duration) {
        if let cpu = host.treeCPUTime(of: worker.pid) {
            let (whole, atto) = bootTime.components
            bootBudget.record(cpuSeconds: cpu.seconds, bootSeconds: Double(whole) + Double(atto) / 1e18, waitedSeconds: cpu.waitedSeconds)
        }
        givePriorityBack(worker)
    }

    /// A boot that yields to everything else on the host may starve on a busy one: at half
    /// `timeout` (its readiness timeout; a mold's `start_timeout`), a child still booting gets
    /// baton's priority back, so `boot_nice` alone never runs a boot into its timeout.
    func limitBootNice(_ child: some BootingChild, timeout: Duration) {
        guard child.bootNice > 0 else { return }
        let half = timeout / 2
        child.timers.append(
            loop.schedule(after: half) { [unowned self, unowned child] in
                guard child.isBooting, child.bootNice > 0 else { return }
                self.logger.info(
                    "\(child.kind) still booting after \(Units.formatDuration(half)) at boot_nice \(child.bootNice): baton's priority back (half its timeout)",
                    metadata: child.logMetadata)
                self.givePriorityBack(child)
            })
    }

    /// Every thread of the child's tree back at baton's priority (once),
    /// and the tree's threads once more `priorityRecheck` later: a process that was forking
    /// while the walk ran gave its child the boot value before the walk set the parent, and
    /// the child shows in the tree only once its fork returns (gunicorn's master forks its
    /// worker right after it sent READY=1: traced, the fork began 90 µs before the walk and
    /// returned 2 ms after it), so no walk at that moment can see it.
    func givePriorityBack(_ child: some BootingChild) {
        guard child.bootNice > 0 else { return }
        child.bootNice = 0
        if !host.setPriority(tree: child.pid, nice: ProcessPriority.current) {
            logger.warning("could not give every thread of the \(child.kind) its priority back (boot_nice)", metadata: child.logMetadata)
        }
        child.timers.append(
            loop.schedule(after: Self.priorityRecheck) { [unowned self, unowned child] in
                _ = self.host.setPriority(tree: child.pid, nice: ProcessPriority.current)
            })
    }

    /// How long after giving a tree its priority back baton walks it again (`givePriorityBack`).
    static let priorityRecheck: Duration = .seconds(1)
}

/// A child that boots the app, a worker or a mold: what `boot_nice` acts on.
protocol BootingChild: ChildChannels {
    /// Its pid: it leads its process group (in baton's session).
    var pid: pid_t { get }
    /// How much nicer than baton it boots; 0 once given back (or never made nicer).
    var bootNice: Int32 { get set }
    /// Whether it still boots (not ready yet, not stopping).
    var isBooting: Bool { get }
    /// "worker" or "mold", for the log.
    var kind: String { get }
    /// Its slot or release and pid, for the log.
    var logMetadata: Logger.Metadata { get }
}

extension Worker: BootingChild {
    var isBooting: Bool { state == .starting }
    var kind: String { "worker" }
    var logMetadata: Logger.Metadata { ["slot": .stringConvertible(slot), "pid": .stringConvertible(pid)] }
}

extension Mold: BootingChild {
    var isBooting: Bool { state == .starting }
    var kind: String { "mold" }
    var logMetadata: Logger.Metadata { ["release": .string(spec.release), "pid": .stringConvertible(pid)] }
}
