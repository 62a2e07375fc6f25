/// Exponential backoff for respawning a worker that keeps failing: the delay
/// doubles with each consecutive failure up to `cap`, and the count resets once
/// a worker has stayed up for `stableAfter`.
public struct CrashBackoff: Sendable, Equatable {
    /// Delay after the first failure.
    public var base: Duration
    /// Largest delay.
    public var cap: Duration
    /// Uptime after which a worker counts as stable and the count resets.
    public var stableAfter: Duration
    /// Failures in a row, without a stable worker in between.
    public private(set) var consecutiveFailures: Int = 0

    /// Failures in a row from which status calls a slot crash-looping.
    public static let crashLoopThreshold = 3

    /// Creates a backoff (defaults: 1 s doubling to 60 s, stable after 30 s).
    public init(base: Duration = .seconds(1), cap: Duration = .seconds(60), stableAfter: Duration = .seconds(30)) {
        self.base = base
        self.cap = cap
        self.stableAfter = stableAfter
    }

    /// Records that a worker ended after `uptime` (nil: it never started or
    /// never became ready) and returns how long to wait before the next start.
    public mutating func workerFailed(uptime: Duration?) -> Duration {
        if let uptime, uptime >= stableAfter { consecutiveFailures = 0 }
        consecutiveFailures += 1
        return delay(forFailures: consecutiveFailures)
    }

    /// Records a worker that has been up for `stableAfter`.
    public mutating func workerStable() { consecutiveFailures = 0 }

    /// The delay after `n` consecutive failures.
    public func delay(forFailures n: Int) -> Duration {
        guard n > 0 else { return .zero }
        var d = base
        for _ in 1..<min(n, 32) {
            d = d * 2
            if d >= cap { return cap }
        }
        return min(d, cap)
    }

    /// True when the slot is failing repeatedly.
    public var isCrashLooping: Bool { consecutiveFailures >= Self.crashLoopThreshold }
}
