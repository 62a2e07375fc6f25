/// How many new workers may boot at once, from the CPU their boots were measured to use.
///
/// A boot that computes (an interpreter loading an app) takes a whole core: more such boots
/// than cores only slow every boot down and take CPU from the workers that serve, so the
/// budget is one per CPU. A boot that mostly waits (a sleep, a connection to a database, a
/// cache warming over the network) takes a small share of a core: bounding those by the CPU
/// count serialises a rollout for nothing. So the budget is the CPU count divided by the CPU
/// share of a boot, the largest share of the last few boots measured, and never below one
/// boot or above `maxPerCPU` boots per CPU. Until a boot was measured, one boot per CPU.
///
/// The share is CPU time over the boot's wall time *less the time it waited for a CPU*: four
/// interpreters loading an app at once on two cores each use half a core because they queue
/// for one, not because they wait for anything else. Counted over the whole wall time, such a
/// boot looked like half a core's worth, so the next rollout booted four at once again
/// (measured: puma boots of 0.7 s took 1.7 s each, four at once beside the serving workers).
public struct BootBudget: Sendable, Equatable {
    /// The CPUs boots are planned for (at least 1).
    public private(set) var cpus: Int
    /// Boots at once per CPU, at most, however little CPU a boot takes.
    public static let maxPerCPU = 16
    /// The least part of a boot taken as running, whatever its threads' summed waits say.
    public static let leastRunningShare = 0.1
    /// Boots remembered: the budget follows the heaviest of them.
    public static let remembered = 4
    /// CPU shares of the last boots measured, newest last.
    public private(set) var shares: [Double] = []

    /// A budget for `cpus` online CPUs (at least 1), with no boot measured.
    public init(cpus: Int) {
        self.cpus = max(1, cpus)
    }

    /// Plans for `cpus` CPUs from now on (at least 1), the boots measured kept: their shares
    /// are of one CPU each, whatever the count.
    public mutating func follow(cpus: Int) {
        self.cpus = max(1, cpus)
    }

    /// Records one boot: `cpuSeconds` of CPU (the worker's whole tree, reaped children
    /// included) over `bootSeconds` from start to ready, of which its threads spent
    /// `waitedSeconds` queued for a CPU. A boot of no measurable length is ignored.
    public mutating func record(cpuSeconds: Double, bootSeconds: Double, waitedSeconds: Double = 0) {
        guard bootSeconds > 0, cpuSeconds >= 0, cpuSeconds.isFinite, bootSeconds.isFinite else { return }
        // Queued time is not the boot's own: it would have computed then, had a CPU been free.
        // But the waits are summed over the tree's threads, and on a host short of CPU they can
        // cover the whole boot: its running time is then taken as at least a tenth of the boot.
        // (It was taken as none, the boot as a whole CPU: one such boot of a worker that sleeps
        // through its boot cut the next rollout to one boot per CPU, a flaky surge test.)
        let waited = waitedSeconds.isFinite ? max(0, waitedSeconds) : 0
        let running = max(bootSeconds - waited, bootSeconds * Self.leastRunningShare)
        shares.append(min(1, cpuSeconds / running))
        if shares.count > Self.remembered { shares.removeFirst(shares.count - Self.remembered) }
    }

    /// Records a boot that ran out of its readiness timeout while it queued for a CPU most of
    /// it: a whole CPU's share, whatever it measured.
    public mutating func recordStarved() {
        shares.append(1)
        if shares.count > Self.remembered { shares.removeFirst(shares.count - Self.remembered) }
    }

    /// The CPU share the budget is computed from: the largest of the boots remembered.
    public var share: Double? { shares.max() }

    /// New workers that may boot at once.
    public var boots: Int {
        let most = cpus * Self.maxPerCPU
        guard let share else { return cpus }
        guard share > 0 else { return most }
        let fit = Double(cpus) / share
        return fit >= Double(most) ? most : max(1, Int(fit.rounded(.down)))
    }
}
