/// Counts the kernel's OOM kills in baton's memory cgroup and attributes each to a slot, as a
/// pure state machine: the supervisor feeds it the cgroup's `oom_kill` counter, the kernel log's
/// "Killed process" records read since the last call, and the pids of every worker's process
/// tree (its last snapshot); it returns the kills that are new.
///
/// Attribution, for the kills the counter says happened (never more):
/// 1. a kernel log record whose pid is in a slot's tree (the top process or a descendant);
/// 2. a worker's top process that died of SIGKILL baton did not send (the kernel log was not
///    readable, or did not name it yet);
/// 3. without any kernel log record: the one process that vanished from the trees since the
///    snapshot, when exactly one did;
/// 4. what is left: kernel log records of pids outside every tree (a process of baton's cgroup
///    that is not a worker, or a descendant forked after the snapshot), then unnamed kills.
///
/// The counter is hierarchical (v1 `memory.oom_control`, v2 `memory.events`): kills in child
/// cgroups count too. The first reading is the baseline (kills before baton started are not
/// baton's news); a counter that goes back (the cgroup was recreated) restarts the baseline.
public struct OOMTracker: Sendable, Equatable {
    /// How long after a kill plans keep ``marginBytes(now:footprint:)``.
    public let marginWindow: Duration
    /// The last counter reading.
    public private(set) var counter: UInt64?
    /// Kills per slot since baton started.
    public private(set) var bySlot: [Int: Int] = [:]
    /// Kills since baton started, attributed or not.
    public private(set) var total = 0
    /// The most recent kills, oldest first (at most ``recentKept``).
    public private(set) var recent: [OOMKill] = []
    /// When the last kill was seen (monotonic clock).
    public private(set) var lastSeen: Duration?

    /// Kills kept in ``recent``.
    public static let recentKept = 16
    /// The margin when no footprint is known: 64 MiB.
    public static let defaultMargin: UInt64 = 64 << 20

    /// Creates a tracker (default: plans keep a margin for an hour after a kill).
    public init(marginWindow: Duration = .seconds(3600)) {
        self.marginWindow = marginWindow
    }

    /// The kills an earlier image counted (a `baton upgrade`): the totals carry on.
    public mutating func carry(total: Int, bySlot: [Int: Int]) {
        self.total += total
        self.bySlot.merge(bySlot, uniquingKeysWith: +)
    }

    /// A counter reading: how many kills are new since the previous one (0 for the first).
    public mutating func observe(counter value: UInt64) -> Int {
        defer { counter = value }
        guard let previous = counter, value >= previous else { return 0 }
        return Int(min(value - previous, 1 << 20))
    }

    /// What the supervisor knows when kills are new.
    public struct Evidence: Sendable, Equatable {
        /// Kernel log records read since the last call.
        public var messages: [OOMKillMessage]
        /// Every pid of every slot's tree (last snapshot, top processes included) → slot.
        public var trees: [Int32: Int]
        /// The slots' top processes (the workers baton started) → slot.
        public var tops: [Int32: Int]
        /// Top processes that died of a SIGKILL baton did not send → slot.
        public var sigkilledTops: [Int32: Int]
        /// Descendants in the snapshot that are gone now → slot.
        public var vanished: [Int32: Int]

        /// Creates evidence.
        public init(
            messages: [OOMKillMessage] = [], trees: [Int32: Int] = [:], tops: [Int32: Int] = [:],
            sigkilledTops: [Int32: Int] = [:], vanished: [Int32: Int] = [:]
        ) {
            self.messages = messages
            self.trees = trees
            self.tops = tops
            self.sigkilledTops = sigkilledTops
            self.vanished = vanished
        }
    }

    /// Attributes `count` new kills (from ``observe(counter:)``) and records them; returns them.
    public mutating func record(count: Int, evidence e: Evidence, now: Duration, wall: Double) -> [OOMKill] {
        var remaining = max(0, count)
        var kills: [OOMKill] = []
        var used = Set<Int32>()
        func add(_ pid: Int32?, _ comm: String?, _ slot: Int?) {
            guard remaining > 0 else { return }
            if let pid { used.insert(pid) }
            let top = pid.map { e.tops[$0] != nil || e.sigkilledTops[$0] != nil } ?? false
            kills.append(OOMKill(pid: pid, comm: comm?.isEmpty == true ? nil : comm, slot: slot, topProcess: top, at: wall))
            remaining -= 1
        }
        let named = e.messages.filter { !used.contains($0.pid) }
        for m in named {
            if let slot = e.trees[m.pid] ?? e.sigkilledTops[m.pid], !used.contains(m.pid) { add(m.pid, m.comm, slot) }
        }
        for (pid, slot) in e.sigkilledTops.sorted(by: { $0.key < $1.key }) where !used.contains(pid) { add(pid, nil, slot) }
        if e.messages.isEmpty, e.vanished.count == 1, let (pid, slot) = e.vanished.first { add(pid, nil, slot) }
        for m in named where !used.contains(m.pid) { add(m.pid, m.comm, nil) }
        while remaining > 0 { add(nil, nil, nil) }
        for kill in kills {
            total += 1
            if let slot = kill.slot { bySlot[slot, default: 0] += 1 }
        }
        if !kills.isEmpty { lastSeen = now }
        recent.append(contentsOf: kills)
        if recent.count > Self.recentKept { recent.removeFirst(recent.count - Self.recentKept) }
        return kills
    }

    /// True when a recorded kill named `pid`.
    public func killed(pid: Int32) -> Bool { recent.contains { $0.pid == pid } }

    /// The extra margin a memory plan keeps because an OOM kill was seen recently: one new-worker
    /// `footprint` (``defaultMargin`` when none is known) within ``marginWindow`` of the last
    /// kill, else 0. The kernel killed something here lately: the figures the plan works from
    /// proved optimistic once, so it asks for one more worker's worth of slack.
    public func marginBytes(now: Duration, footprint: UInt64?) -> UInt64 {
        guard let lastSeen, now - lastSeen <= marginWindow else { return 0 }
        return max(footprint ?? Self.defaultMargin, 1)
    }
}
