/// One memory measurement of a worker.
public struct MemoryPoint: Sendable, Equatable, Codable {
    /// When (monotonic clock).
    public var at: Duration
    /// Bytes (baton records the tree's USS: what a restart frees, what `worker_limit` bounds).
    public var bytes: UInt64

    /// Creates a point.
    public init(at: Duration, bytes: UInt64) {
        self.at = at
        self.bytes = bytes
    }
}

/// A worker's growth rate from a robust fit over its samples.
public struct LeakRate: Sendable, Equatable, Codable {
    /// The fitted growth in bytes per second (negative when shrinking).
    public var bytesPerSecond: Double
    /// The fitted size at ``at``, the time of the latest sample.
    public var fittedBytes: Double
    /// The time of the latest sample.
    public var at: Duration

    /// Creates a rate.
    public init(bytesPerSecond: Double, fittedBytes: Double, at: Duration) {
        self.bytesPerSecond = bytesPerSecond
        self.fittedBytes = fittedBytes
        self.at = at
    }

    /// The growth in MiB per hour, as `baton status` shows it.
    public var mibPerHour: Double { bytesPerSecond * 3600 / 1_048_576 }

    /// How long from `now` until the fit reaches `limit`: `.zero` when it already has, nil when
    /// it is not growing (or would take longer than ten years).
    public func timeToReach(_ limit: UInt64, from now: Duration) -> Duration? {
        let remaining = Double(limit) - fittedBytes
        if remaining <= 0 { return .zero }
        guard bytesPerSecond > 0 else { return nil }
        let seconds = remaining / bytesPerSecond - Self.seconds(now - at)
        if seconds <= 0 { return .zero }
        guard seconds < 10 * 365 * 86_400 else { return nil }
        return .seconds(seconds)
    }

    /// Theil–Sen fit of `points`: the slope is the median of the slopes between every pair of
    /// points (pairs at the same instant skipped), the intercept the median of
    /// `bytes − slope × t`. A single outlier — a GC spike, one huge request — moves neither
    /// median, where a least-squares line would follow it. Time is in seconds since the first
    /// point. Nil for fewer than two distinct instants.
    public static func theilSen(_ points: [MemoryPoint]) -> (slope: Double, intercept: Double)? {
        guard let origin = points.first?.at else { return nil }
        let t = points.map { seconds($0.at - origin) }
        let y = points.map { Double($0.bytes) }
        var slopes: [Double] = []
        slopes.reserveCapacity(points.count * (points.count - 1) / 2)
        for i in 0..<points.count {
            for j in (i + 1)..<points.count where t[j] != t[i] {
                slopes.append((y[j] - y[i]) / (t[j] - t[i]))
            }
        }
        guard !slopes.isEmpty else { return nil }
        let slope = median(&slopes)
        var offsets = (0..<points.count).map { y[$0] - slope * t[$0] }
        return (slope, median(&offsets))
    }

    /// The median (the mean of the two middle values of an even count); reorders `values`.
    static func median(_ values: inout [Double]) -> Double {
        let n = values.count
        let upper = select(&values, n / 2)
        guard n % 2 == 0 else { return upper }
        // After selection everything before n/2 is ≤ upper: the lower middle is their maximum.
        let lower = values[0..<(n / 2)].max() ?? upper
        return (lower + upper) / 2
    }

    /// Quickselect: the `k`th smallest, with smaller values moved before index `k`.
    static func select(_ a: inout [Double], _ k: Int) -> Double {
        var low = 0
        var high = a.count - 1
        while low < high {
            let pivot = a[low + (high - low) / 2]
            var i = low
            var j = high
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j {
                    a.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if k <= j {
                high = j
            } else if k >= i {
                low = i
            } else {
                break
            }
        }
        return a[k]
    }

    /// A duration in seconds.
    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) / 1e18
    }
}

/// The last `capacity` memory samples of one worker (a ring buffer), with its leak rate kept
/// up to date as samples arrive (the fit is quadratic in the sample count, so it runs once per
/// sample, not once per policy check).
public struct MemoryHistory: Sendable, Equatable {
    /// Samples kept.
    public let capacity: Int
    /// A rate needs at least this many samples ...
    public let minimumSamples: Int
    /// ... spanning at least this long: a few minutes of boot noise is not a trend.
    public let minimumSpan: Duration
    /// The ring: `storage[(start + i) % capacity]` is the i-th oldest.
    private var storage: [MemoryPoint] = []
    /// Index of the oldest sample once the ring is full.
    private var start = 0
    /// The fit over the current samples.
    public private(set) var leakRate: LeakRate?

    /// Creates an empty history (defaults: 120 samples, a rate from 6 samples over 5 minutes).
    public init(capacity: Int = 120, minimumSamples: Int = 6, minimumSpan: Duration = .seconds(300)) {
        self.capacity = max(2, capacity)
        self.minimumSamples = max(2, minimumSamples)
        self.minimumSpan = minimumSpan
        storage.reserveCapacity(self.capacity)
    }

    /// The samples, oldest first.
    public var samples: [MemoryPoint] {
        Array(storage[start...] + storage[..<start])
    }

    /// The number of samples held.
    public var count: Int { storage.count }

    /// The newest sample.
    public var latest: MemoryPoint? {
        storage.isEmpty ? nil : storage[(start + storage.count - 1) % storage.count]
    }

    /// Adds a sample; one not later than the newest replaces it (a clock cannot go back, but a
    /// repeated measurement at the same instant can come in).
    public mutating func append(_ point: MemoryPoint) {
        if let last = latest, point.at <= last.at {
            storage[(start + storage.count - 1) % storage.count] = MemoryPoint(at: last.at, bytes: point.bytes)
        } else if storage.count < capacity {
            storage.append(point)
        } else {
            storage[start] = point
            start = (start + 1) % capacity
        }
        refit()
    }

    /// The growth of the samples taken within `window` of the newest, in bytes per second, when
    /// it is clear: the lower quartile of the slopes between every pair of them (at least
    /// `minimumSamples`), nil unless positive. A fast leak shows in seconds, long before
    /// ``leakRate`` (minutes of samples) exists; a worker that only wobbles has as many falling
    /// pairs as rising ones, so its lower quartile is not positive and it counts as not growing.
    public func recentGrowth(within window: Duration, minimumSamples: Int = 3) -> Double? {
        guard let newest = latest?.at else { return nil }
        let points = samples.filter { newest - $0.at <= window }
        guard points.count >= max(2, minimumSamples) else { return nil }
        var slopes: [Double] = []
        for i in 0..<points.count {
            for j in (i + 1)..<points.count where points[j].at != points[i].at {
                slopes.append((Double(points[j].bytes) - Double(points[i].bytes)) / LeakRate.seconds(points[j].at - points[i].at))
            }
        }
        guard !slopes.isEmpty else { return nil }
        let quartile = LeakRate.select(&slopes, (slopes.count - 1) / 4)
        return quartile > 0 ? quartile : nil
    }

    /// Recomputes ``leakRate``.
    private mutating func refit() {
        let points = samples
        guard points.count >= minimumSamples, let first = points.first, let last = points.last,
            last.at - first.at >= minimumSpan, let fit = LeakRate.theilSen(points)
        else {
            leakRate = nil
            return
        }
        let t = LeakRate.seconds(last.at - first.at)
        leakRate = LeakRate(bytesPerSecond: fit.slope, fittedBytes: fit.intercept + fit.slope * t, at: last.at)
    }
}
