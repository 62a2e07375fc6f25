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

    /// Whether replacing it would give memory back (``isGrowth(from:to:)``).
    public var hasGrown: Bool { Self.isGrowth(from: ussAtReady, to: ussNow) }

    /// Whether a USS that went from `start` to `now` grew by at least 1 MiB and 5 %: what a
    /// replacement is expected to free, where a few pages more (allocator noise, a cache
    /// warming up) free nothing.
    public static func isGrowth(from start: UInt64, to now: UInt64) -> Bool {
        now >= start && now - start >= max(1 << 20, start / 20)
    }
}

/// The roll-ahead before a deploy that does not fit: which workers to restart, in what order,
/// and whether that can ever be enough.
public struct RollAheadPlan: Sendable, Equatable {
    /// Every grown worker's slot, largest growth first: restarted one at a time, re-measuring
    /// after each, until the re-measured figures fit. Empty when the deploy already fits or
    /// cannot be helped.
    public var slots: [Int]
    /// How many of `slots`, from the first, the measured growth says should be enough.
    public var expectedCount: Int
    /// The growth those `expectedCount` restarts are expected to free.
    public var expectedReclaim: UInt64
    /// False when restarting every grown worker would still leave the deploy short.
    public var canFit: Bool
    /// Bytes missing under the binding limit, margin and expected growth included (0: fits).
    public var short: UInt64
    /// One line for CI logs.
    public var summary: String

    /// Creates a plan.
    public init(slots: [Int], expectedCount: Int? = nil, expectedReclaim: UInt64, canFit: Bool, short: UInt64 = 0, summary: String) {
        self.slots = slots
        self.expectedCount = expectedCount ?? slots.count
        self.expectedReclaim = expectedReclaim
        self.canFit = canFit
        self.short = short
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

    /// What a held reservation rolls when the headroom is `short` under its trigger: the
    /// worker grown the most (``WorkerGrowth/hasGrown``); nothing when none grew, or when
    /// restarting every grown worker would not free `short` (the rest of the fall is not the
    /// workers' growth: each roll would take a slot out of service and not bring the headroom back).
    public static func reservationRoll(_ workers: [WorkerGrowth], short: UInt64) -> ReservationRoll {
        let grown = order(workers).filter(\.hasGrown)
        guard let first = grown.first else { return .nothingGrown }
        let total = grown.reduce(UInt64(0)) { $0.saturatingAdd($1.growth) }
        return total >= short ? .roll(first) : .cannotClose(growth: total)
    }

    /// Bytes missing under `verdict`'s binding limit once `extra` (the safety margin and the
    /// growth expected while the reservation is held) is counted too; 0 when it fits.
    public static func short(_ verdict: PreflightVerdict, extra: UInt64) -> UInt64 {
        let missing = Int64(clamping: verdict.bindingNeed + extra) - verdict.binding.available
        return missing > 0 ? UInt64(missing) : 0
    }

    /// The restarts for `verdict` to fit with `extra` bytes to spare: every grown worker not in
    /// `exclude` (the slots this roll-ahead already restarted), largest growth first. The
    /// caller restarts them one at a time and stops as soon as a re-measured verdict fits, so
    /// the list goes past the workers expected to be enough: replacements under load grow
    /// again at once, and one growth figure may be off. If all of them together are not
    /// expected to free enough, the plan says the deploy cannot fit (refuse without
    /// restarting anything).
    public static func plan(
        for verdict: PreflightVerdict, workers: [WorkerGrowth], extra: UInt64 = 0, exclude: Set<Int> = []
    ) -> RollAheadPlan {
        guard verdict.fits || verdict.shortfall > 0 else {
            // Not short of bytes, yet no fit: the footprint is unknown; restarts cannot tell.
            return RollAheadPlan(slots: [], expectedReclaim: 0, canFit: false, summary: verdict.summary)
        }
        let short = short(verdict, extra: extra)
        guard short > 0 else {
            return RollAheadPlan(slots: [], expectedReclaim: 0, canFit: true, summary: "fits without restarts")
        }
        let grown = order(workers).filter { $0.growth > 0 && !exclude.contains($0.slot) }
        var count = 0
        var reclaim: UInt64 = 0
        for worker in grown where reclaim < short {
            count += 1
            reclaim += worker.growth
        }
        let missing = Units.formatSize(short)
        let name = verdict.binding.kind.name
        // Said as what the plan keeps free beyond the need, not as headroom left over (an operator
        // audit read "64 MiB to spare" as the whole headroom).
        let spare = extra > 0 ? " (the need plus \(Units.formatSize(extra)) kept free)" : ""
        guard reclaim >= short else {
            let total = Units.formatSize(reclaim)
            let which = exclude.isEmpty ? "every worker" : "every worker not yet restarted"
            return RollAheadPlan(
                slots: [], expectedReclaim: reclaim, canFit: false, short: short,
                summary:
                    "cannot fit: \(missing) short under \(name)\(spare); restarting \(which) would free about \(total) (their growth since boot)"
            )
        }
        let slots = grown.map(\.slot)
        let list = slots.prefix(count).map(String.init).joined(separator: ", ")
        return RollAheadPlan(
            slots: slots, expectedCount: count, expectedReclaim: reclaim, canFit: true, short: short,
            summary:
                "\(missing) short under \(name)\(spare): restarting slot\(count == 1 ? "" : "s") \(list) should free about \(Units.formatSize(reclaim)); re-measured after each"
        )
    }
}

/// What a held reservation does at a sample that calls for a roll (``RollAhead/reservationRoll(_:short:)``).
public enum ReservationRoll: Sendable, Equatable {
    /// Restart this worker.
    case roll(WorkerGrowth)
    /// No worker grew by 1 MiB and 5 % since it became ready.
    case nothingGrown
    /// The grown workers' `growth` together is less than the headroom is short.
    case cannotClose(growth: UInt64)
}
