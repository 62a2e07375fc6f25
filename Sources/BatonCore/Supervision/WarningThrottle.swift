/// At most one warning per `interval` from one source (a worker's notify socket), with a count
/// of those held back: a worker sending one bad message in a loop made 110,960 WARN lines in
/// 6 s, all alike (an audit of misbehaving workers).
public struct WarningThrottle: Sendable, Equatable {
    public let interval: Duration
    /// When the last warning was let through (nil: none yet).
    public private(set) var lastAt: Duration?
    /// Warnings held back since then.
    public private(set) var held = 0

    public init(interval: Duration = .seconds(10)) { self.interval = interval }

    /// Whether a warning at `now` is logged: nil if it is held back, else how many were held
    /// back before it.
    public mutating func admit(now: Duration) -> Int? {
        if let lastAt, now - lastAt < interval {
            held += 1
            return nil
        }
        defer {
            lastAt = now
            held = 0
        }
        return held
    }
}
