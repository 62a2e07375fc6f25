import Synchronization

/// A clock the test moves by hand; the supervisor's `EventLoop` reads it.
final class ManualClock: Sendable {
    private let time = Mutex<Duration>(.seconds(1000))

    /// The current time.
    var now: Duration { time.withLock { $0 } }

    /// Moves the clock to `t` (never backwards).
    func set(_ t: Duration) { time.withLock { $0 = max($0, t) } }
}
