/// How much a worker grew since it became ready: what restarting it is expected to free.
public struct WorkerGrowth: Sendable, Equatable {
    /// The worker's slot.
    public var slot: Int
    /// Its pid (for messages).
    public var pid: Int32
    /// Its tree's USS when it became ready.
    public var ussAtReady: UInt64
    /// Its tree's USS now.
    public var ussNow: UInt64

    /// Creates a growth record.
    public init(slot: Int, pid: Int32, ussAtReady: UInt64, ussNow: UInt64) {
        self.slot = slot
        self.pid = pid
        self.ussAtReady = ussAtReady
        self.ussNow = ussNow
    }

    /// `ussNow − ussAtReady`, 0 for a worker that shrank.
    public var growth: UInt64 { ussNow > ussAtReady ? ussNow - ussAtReady : 0 }
}

/// The roll-ahead before a deploy that does not fit: which workers to restart, in what order,
/// and whether that can ever be enough.
public struct RollAheadPlan: Sendable, Equatable {
    /// Slots to restart, one at a time, in this order (stop early once a re-measured
    /// preflight fits). Empty when the deploy already fits or cannot be helped.
    public var slots: [Int]
    /// The growth those restarts are expected to free.
    public var expectedReclaim: UInt64
    /// False when restarting every grown worker would still leave the deploy short.
    public var canFit: Bool
    /// One line for CI logs.
    public var summary: String

    /// Creates a plan.
    public init(slots: [Int], expectedReclaim: UInt64, canFit: Bool, summary: String) {
        self.slots = slots
        self.expectedReclaim = expectedReclaim
        self.canFit = canFit
        self.summary = summary
    }
}

/// Orders and bounds the roll-ahead.
public enum RollAhead {
    /// Workers by USS growth since boot, largest first (ties: lower slot first). Growth, not
    /// size: a big worker that was big at boot frees nothing by restarting.
    public static func order(_ workers: [WorkerGrowth]) -> [WorkerGrowth] {
        workers.sorted { ($0.growth, -$0.slot) > ($1.growth, -$1.slot) }
    }

    /// The restarts expected to cover `verdict`'s shortfall: the grown workers, largest growth
    /// first, until their growth adds up to the shortfall. If all of them together do not, the
    /// plan says the deploy cannot fit (refuse without restarting anything).
    public static func plan(for verdict: PreflightVerdict, workers: [WorkerGrowth]) -> RollAheadPlan {
        guard !verdict.fits else {
            return RollAheadPlan(slots: [], expectedReclaim: 0, canFit: true, summary: "fits without restarts")
        }
        guard verdict.shortfall > 0 else {
            // Not short of bytes, yet no fit: the footprint is unknown; restarts cannot tell.
            return RollAheadPlan(slots: [], expectedReclaim: 0, canFit: false, summary: verdict.summary)
        }
        let grown = order(workers).filter { $0.growth > 0 }
        var slots: [Int] = []
        var reclaim: UInt64 = 0
        for worker in grown where reclaim < verdict.shortfall {
            slots.append(worker.slot)
            reclaim += worker.growth
        }
        let short = Units.formatSize(verdict.shortfall)
        let name = verdict.binding.kind.name
        guard reclaim >= verdict.shortfall else {
            let total = Units.formatSize(reclaim)
            return RollAheadPlan(
                slots: [], expectedReclaim: reclaim, canFit: false,
                summary:
                    "cannot fit: \(short) short under \(name); restarting every worker would free about \(total) (their growth since boot)"
            )
        }
        let list = slots.map(String.init).joined(separator: ", ")
        return RollAheadPlan(
            slots: slots, expectedReclaim: reclaim, canFit: true,
            summary:
                "\(short) short under \(name): restarting slot\(slots.count == 1 ? "" : "s") \(list) should free about \(Units.formatSize(reclaim))"
        )
    }
}
