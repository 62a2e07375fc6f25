import BatonCore
import BatonSystem
import Glibc
import Logging

/// What the supervisor keeps to see kernel OOM kills in its cgroup (on the loop thread only).
final class OOMWatch {
    /// How often the counter is read: one small cgroup file and a tree walk per worker.
    static let pollInterval: Duration = .seconds(1)
    /// Counts, attribution, the margin for later plans.
    var tracker = OOMTracker()
    /// The cgroup's `oom_kill` counter, nil when baton's memory cgroup has none.
    var counter: (any OOMCounting)?
    /// The kernel log, for the victims' pids and names.
    var kernelLog: (any OOMKillLog)?
    /// Every pid of every slot's tree at the last poll → slot.
    var trees: [pid_t: Int] = [:]
    /// The same pids → the worker whose tree held them (a slot's draining workers too).
    var owners: [pid_t: pid_t] = [:]
    /// A walk of the trees runs off the loop.
    var walking = false
    /// Kills the counter showed whose kernel log record had not arrived yet (one poll of grace).
    var pendingKills = 0
    /// Slots whose top process survived the kill of a descendant → that top process: replaced
    /// as soon as no operation runs.
    var pendingReplacements: [Int: pid_t] = [:]
}

/// OOM kills: the memory cgroup's `oom_kill` counter (v1 `memory.oom_control`, v2
/// `memory.events`) polled every second, the victims' pids from the kernel log, each attributed
/// to the slot whose process tree held it (a snapshot of every tree walked off the loop at each poll; baton
/// is the child subreaper, so orphans stay in it). A kill is logged at WARN with the victim,
/// counted per slot (status, metrics); a slot whose top process survived is replaced (reason
/// `oom`); a top process killed is a crash with reason `oom`; and plans keep a margin for a
/// while (``OOMTracker/marginBytes(now:footprint:)``).
extension Supervisor {
    /// Opens the counter and the kernel log and starts the poll.
    func startOOMWatch() {
        do {
            memoryMonitor.oom.counter = try host.openOOMCounter()
            _ = memoryMonitor.oom.tracker.observe(counter: try memoryMonitor.oom.counter?.read() ?? 0)
        } catch {
            logger.info("OOM kills not watched: \(error)")
            return
        }
        let log = host.openKernelLog()
        if let problem = log.openError {
            logger.info("kernel log not readable (\(problem)): OOM kills are counted, victims named only when a worker's own process dies")
        }
        memoryMonitor.oom.kernelLog = log
        snapshotTrees()
        scheduleOOMPoll()
    }

    private func scheduleOOMPoll() {
        repeatUntilStopping(every: OOMWatch.pollInterval) { [unowned self] in self.pollOOM() }
    }

    /// Reads the counter; attributes, logs and acts on new kills. `sigkilled`: a top process that
    /// just died of a SIGKILL baton did not send (its exit is being handled now).
    func pollOOM(sigkilled: Worker? = nil) {
        guard let reader = memoryMonitor.oom.counter, let value = try? reader.read() else { return }
        let new = memoryMonitor.oom.tracker.observe(counter: value)
        let messages = memoryMonitor.oom.kernelLog?.newOOMKills() ?? []
        let waiting = memoryMonitor.oom.pendingKills + new
        if waiting > 0 {
            // The counter rises just before the kernel logs the victim: give the record one poll.
            if sigkilled == nil, memoryMonitor.oom.pendingKills == 0, messages.count < waiting, memoryMonitor.oom.kernelLog?.isOpen == true {
                memoryMonitor.oom.pendingKills = waiting
            } else {
                memoryMonitor.oom.pendingKills = 0
                recordOOMKills(waiting, messages: messages, sigkilled: sigkilled)
            }
        }
        snapshotTrees()
        // Not while a worker's exit is being handled: an operation must not start in the middle.
        if sigkilled == nil { replacePendingOOMSlots() }
    }

    /// Attributes `count` kills and acts on each.
    private func recordOOMKills(_ count: Int, messages: [OOMKillMessage], sigkilled: Worker?) {
        var tops: [Int32: Int] = [:]
        for slot in slots { for w in slot.workers where w.state != .exited { tops[w.pid] = slot.index } }
        var trees = memoryMonitor.oom.trees
        var owners = memoryMonitor.oom.owners
        // A victim forked after the last snapshot may still be a zombie: its ppid chain says where it was.
        for m in messages where trees[m.pid] == nil {
            if let top = tops.first(where: { host.processes.isInTree(m.pid, root: $0.key) }) {
                trees[m.pid] = top.value
                owners[m.pid] = top.key
            }
        }
        let vanished = memoryMonitor.oom.trees.filter { tops[$0.key] == nil && !host.processes.exists($0.key) }
        let evidence = OOMTracker.Evidence(
            messages: messages, trees: trees, tops: tops, sigkilledTops: sigkilled.map { [$0.pid: $0.slot] } ?? [:],
            vanished: vanished)
        let kills = memoryMonitor.oom.tracker.record(count: count, evidence: evidence, now: loop.now(), wall: wallClockNow())
        for kill in kills {
            var metadata: Logger.Metadata = ["victim_pid": .string(kill.pid.map(String.init) ?? "?")]
            if let comm = kill.comm { metadata["comm"] = .string(comm) }
            guard let slot = kill.slot else {
                metadata["slot"] = "none"
                logger.warning("OOM kill in baton's memory cgroup: \(kill.victim), not in any worker's process tree", metadata: metadata)
                // A memory audit: a forced surge got the CI build beside it killed, and the
                // deploy's final line and history said only "deploy finished".
                if let op = operation, op.phase == .rollingOut || op.phase == .rollingBack, let pid = kill.pid {
                    op.oomKills.append("outside the workers: pid \(pid)")
                    op.report("the kernel's OOM killer killed \(kill.victim), not in any worker's process tree, in baton's memory cgroup")
                }
                continue
            }
            metadata["slot"] = .stringConvertible(slot)
            noteOOMKillInOperation(kill, slot: slot, owner: kill.pid.flatMap { owners[$0] }, sigkilled: sigkilled)
            let current = slots[slot].current
            if kill.topProcess {
                logger.warning("OOM kill: the kernel killed worker \(kill.victim) of slot \(slot)", metadata: metadata)
            } else if let owner = kill.pid.flatMap({ owners[$0] }), owner != current?.pid {
                // The tree of a worker that is going away (draining, or replaced since): the
                // slot's worker lost nothing (a memory audit: the fresh worker was recycled).
                logger.warning(
                    "OOM kill: the kernel killed \(kill.victim) in the process tree of slot \(slot)'s old worker pid \(owner), which is going away: nothing to replace",
                    metadata: metadata)
            } else if let current {
                logger.warning(
                    "OOM kill: the kernel killed \(kill.victim) in the process tree of slot \(slot) (worker pid \(current.pid)); the slot will be replaced",
                    metadata: metadata)
                if current.state == Worker.State.ready { memoryMonitor.oom.pendingReplacements[slot] = current.pid }
            } else {
                logger.warning("OOM kill: the kernel killed \(kill.victim) in the process tree of slot \(slot), which has no worker now", metadata: metadata)
            }
        }
    }

    /// A kill in a slot while an operation runs is in its progress, final line and history,
    /// unless it took one of the operation's own new workers (whose failure says so). A memory
    /// audit: two serving workers OOM-killed during a deploy (25 failed requests) left no trace
    /// in its output, which said "deploy finished", or "… nothing changed".
    private func noteOOMKillInOperation(_ kill: OOMKill, slot: Int, owner: Int32?, sigkilled: Worker?) {
        guard let op = operation, op.phase == .rollingOut || op.phase == .rollingBack, let pid = kill.pid else { return }
        let top = owner ?? pid
        let worker = sigkilled?.pid == top ? sigkilled : slots[slot].workers.first { $0.pid == top }
        guard worker?.startedByOperation != op.number else { return }
        let what = top == pid ? "pid \(pid)" : "pid \(pid) in worker pid \(top)'s tree"
        op.oomKills.append("slot \(slot): \(what)")
        let whose = top == pid ? ", a worker this \(op.kind.rawValue) did not start" : " in the tree of worker pid \(top)"
        op.report("slot \(slot): the kernel's OOM killer killed \(kill.victim)\(whose)")
    }

    /// Every live worker's tree, pid → slot (and → the worker), walked off the loop: it reads
    /// `/proc/N/task/N/children` of every process of every tree, each second (a re-audit saw
    /// it on the loop: 256 workers, 256 reads or more a second). A walk still running when the
    /// next poll comes is not doubled.
    private func snapshotTrees() {
        guard !memoryMonitor.oom.walking else { return }
        let tops = slots.flatMap { slot in slot.workers.filter { $0.state != .exited }.map { (pid: $0.pid, slot: slot.index) } }
        memoryMonitor.oom.walking = true
        loop.offload({ [processes = host.processes] in
            var trees: [pid_t: Int] = [:]
            var owners: [pid_t: pid_t] = [:]
            for top in tops {
                for pid in processes.tree(of: top.pid) {
                    trees[pid] = top.slot
                    owners[pid] = top.pid
                }
            }
            return (trees, owners)
        }) { [unowned self] (trees: [pid_t: Int], owners: [pid_t: pid_t]) in
            self.memoryMonitor.oom.walking = false
            self.memoryMonitor.oom.trees = trees
            self.memoryMonitor.oom.owners = owners
        }
    }

    /// Hands the slots that lost a descendant to the OOM killer to the recycling engine (first
    /// in its queue; a deploy replaces them anyway).
    private func replacePendingOOMSlots() {
        memoryMonitor.oom.pendingReplacements = memoryMonitor.oom.pendingReplacements.filter { slots[$0.key].current?.pid == $0.value }
        for slot in memoryMonitor.oom.pendingReplacements.keys.sorted() {
            memoryMonitor.oom.pendingReplacements[slot] = nil
            submitPolicyRestart(slot: slot, reason: .oom, log: "replacing slot \(slot) after an OOM kill in its process tree")
        }
    }

    /// Whether `worker`'s own exit (SIGKILL, not sent by baton) was an OOM kill: reads the counter
    /// now (the kernel raises it before it sends the signal).
    func diedOfOOM(_ worker: Worker, exit: CBatonLinuxShim.Exit) -> Bool {
        guard worker.stopReason == nil, case .signaled(SIGKILL) = exit else { return false }
        pollOOM(sigkilled: worker)
        return memoryMonitor.oom.tracker.killed(pid: worker.pid)
    }

    /// The margin memory plans add while an OOM kill is recent.
    func oomMargin(footprint: UInt64?) -> UInt64 {
        memoryMonitor.oom.tracker.marginBytes(now: loop.now(), footprint: footprint)
    }

    /// The preflight line that says the tooling figure includes the OOM margin, if it does.
    func oomMarginDetails(footprint: UInt64?) -> [String] {
        let margin = oomMargin(footprint: footprint)
        guard margin > 0, let last = memoryMonitor.oom.tracker.recent.last else { return [] }
        return [
            "OOM kill seen \(Units.formatElapsed(.seconds(max(0, wallClockNow() - last.at)))) ago: the tooling figure includes a margin of \(Units.formatSize(margin))"
        ]
    }

    /// The status block: totals, per slot, the last kills.
    func oomStatus() -> OOMStatus? {
        guard memoryMonitor.oom.counter != nil else { return nil }
        let t = memoryMonitor.oom.tracker
        let footprint = memoryMonitor.footprints.estimate(release: releaseState.current.directory, configured: config.deploy.workerFootprint)
        let margin = oomMargin(footprint: footprint?.bytes)
        return OOMStatus(
            kills: t.total, bySlot: Dictionary(uniqueKeysWithValues: t.bySlot.map { (String($0.key), $0.value) }), recent: t.recent,
            marginBytes: margin, counterPath: memoryMonitor.oom.counter?.path)
    }
}
