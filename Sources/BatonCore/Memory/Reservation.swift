/// Memory that `baton preflight --need SIZE --roll-ahead` made free and the daemon keeps free
/// until `baton deploy` starts, `baton preflight --release-reservation` runs or the hold passes.
///
/// While it is held the daemon samples the headroom often and cheaply (cgroup and meminfo
/// figures, statm) and rolls the next grown worker once the headroom falls under
/// ``trigger(growthRate:replacementTime:)``: the reservation, the safety margin and what the
/// workers will grow while one replacement runs. Rolling only after the headroom is under the
/// reservation would be too late: the memory a replacement frees comes back only once its old
/// worker has exited.
public struct Reservation: Sendable, Equatable {
    /// The bytes kept free (`--need`).
    public var bytes: UInt64
    /// `[memory] reservation_margin`: kept on top, for what the figures miss.
    public var margin: UInt64
    /// When it was taken (event-loop clock).
    public var heldAt: Duration
    /// When it lapses.
    public var expiresAt: Duration
    /// Workers rolled while it was held (not counting the roll-ahead that made the room).
    public var rolls: Int = 0
    /// The headroom and the workers' memory at the first sample: what the tooling's use of the
    /// reservation is measured from (nil until then).
    public var baseline: Baseline?

    /// The figures ``toolingUse(available:workers:)`` starts from.
    public struct Baseline: Sendable, Equatable {
        /// The headroom, in bytes.
        public var available: Int64
        /// The workers' memory (their trees' RSS, every worker's), in bytes.
        public var workers: UInt64

        /// Creates a baseline.
        public init(available: Int64, workers: UInt64) {
            self.available = available
            self.workers = workers
        }
    }

    /// The hold when `--hold` is not given: long enough for a CI build step between
    /// `preflight` and `deploy` (bundle install, asset compilation).
    public static let defaultHold: Duration = .seconds(900)
    /// The longest hold accepted: a forgotten reservation must not shrink the host for good.
    public static let maximumHold: Duration = .seconds(7200)
    /// The replacement time assumed until one was measured.
    public static let defaultReplacementTime: Duration = .seconds(10)

    /// Creates a reservation of `bytes` held for `hold` from `now`.
    public init(bytes: UInt64, margin: UInt64, now: Duration, hold: Duration) {
        self.bytes = bytes
        self.margin = margin
        self.heldAt = now
        self.expiresAt = now + hold
    }

    /// True once the hold has passed.
    public func expired(now: Duration) -> Bool { now >= expiresAt }

    /// The hold left (zero once expired).
    public func remaining(now: Duration) -> Duration { now >= expiresAt ? .zero : expiresAt - now }

    /// What the tooling it is held for has taken of it: the headroom lost since the first sample
    /// (which this one becomes, when there is none) that the workers' memory does not account
    /// for, at most `bytes`. A headline audit: a CI build that allocated the 250 MiB it had
    /// reserved read as a shortage, and as growth, and every worker was rolled (triggers of
    /// 936 MiB on a 400 MiB host). Memory the workers free counts for the headroom, as their
    /// growth counts against it.
    public mutating func toolingUse(available: Int64, workers: UInt64) -> UInt64 {
        guard let baseline else {
            baseline = Baseline(available: available, workers: workers)
            return 0
        }
        let lost = baseline.available.subtractingReportingOverflow(available).partialValue
        let grown = Int64(clamping: workers).subtractingReportingOverflow(Int64(clamping: baseline.workers)).partialValue
        let others = lost.subtractingReportingOverflow(grown)
        guard !others.overflow, others.partialValue > 0 else { return 0 }
        return min(bytes, UInt64(others.partialValue))
    }

    /// The headroom under which the next worker is rolled: reservation + margin + the growth
    /// expected over one replacement at `growthRate` bytes per second.
    public func trigger(growthRate: Double, replacementTime: Duration) -> UInt64 {
        bytes + margin + GrowthForecast.growth(rate: growthRate, over: replacementTime)
    }

    /// Whether the headroom `available` calls for the next roll.
    public func shouldRoll(available: Int64, growthRate: Double, replacementTime: Duration) -> Bool {
        available < Int64(clamping: trigger(growthRate: growthRate, replacementTime: replacementTime))
    }
}

/// What the workers are expected to grow: the figures a roll-ahead plans with.
public enum GrowthForecast {
    /// The growth window a roll-ahead plans for: the hold, at most two replacements long (the
    /// roll the held reservation would make first, and the one after it). Beyond that the held
    /// reservation rolls further workers as their growth eats into it, so planning a whole
    /// 15-minute hold up front would refuse hosts the reservation can keep safe.
    public static func planningWindow(hold: Duration, replacementTime: Duration) -> Duration {
        min(hold, replacementTime * 2)
    }

    /// One worker's growth rate in bytes per second: its fitted leak rate when there is one,
    /// else its average since it became ready (`ussNow − ussAtReady` over `age`, at least
    /// `floor`, 10 s unless told), else 0.
    public static func rate(leak: LeakRate?, ussAtReady: UInt64?, ussNow: UInt64?, age: Duration, floor: Duration = .seconds(10)) -> Double {
        if let leak { return max(0, leak.bytesPerSecond) }
        guard let start = ussAtReady, let now = ussNow, now > start else { return 0 }
        // At least `floor`: a worker ready for half a second that took its first requests would
        // otherwise look like it grows megabytes a second.
        let seconds = max(LeakRate.seconds(floor), LeakRate.seconds(age))
        return Double(now - start) / seconds
    }

    /// Bytes a total `rate` adds over `window`.
    public static func growth(rate: Double, over window: Duration) -> UInt64 {
        let bytes = max(0, rate) * LeakRate.seconds(window)
        return bytes.isFinite ? UInt64(min(bytes, Double(Units.maxSize))) : Units.maxSize
    }
}

/// The headroom's recent course, sampled by the held reservation: how fast it falls.
public struct HeadroomTrend: Sendable, Equatable {
    /// Samples kept (at 250 ms: the last 4 seconds).
    public let capacity: Int
    private var points: [Sample] = []

    private struct Sample: Sendable, Equatable {
        var at: Duration
        var available: Int64
    }

    /// Creates an empty trend.
    public init(capacity: Int = 16) { self.capacity = max(2, capacity) }

    /// Adds a sample.
    public mutating func append(at: Duration, available: Int64) {
        points.append(Sample(at: at, available: available))
        if points.count > capacity { points.removeFirst(points.count - capacity) }
    }

    /// Forgets every sample (a replacement changes the course).
    public mutating func reset() { points.removeAll() }

    /// Bytes per second the headroom falls (Theil–Sen over the samples; 0 when it rises or
    /// fewer than two samples are in).
    public var fallRate: Double {
        // Shifted so that every figure is positive: a slope does not depend on the offset.
        let shifted = points.map { MemoryPoint(at: $0.at, bytes: UInt64(clamping: Int64(1 << 52) - $0.available)) }
        guard let fit = LeakRate.theilSen(shifted) else { return 0 }
        return max(0, fit.slope)
    }
}
