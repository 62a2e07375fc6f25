import BatonCore
import Testing

@Suite("CrashBackoff")
struct CrashBackoffTests {
    @Test func defaultsDoubleFromOneSecondUpToSixty() {
        var backoff = CrashBackoff()
        #expect(backoff.base == .seconds(1) && backoff.cap == .seconds(60) && backoff.stableAfter == .seconds(30))
        let delays = (0..<9).map { _ in backoff.workerFailed(uptime: nil) }
        #expect(delays == [1, 2, 4, 8, 16, 32, 60, 60, 60].map { Duration.seconds($0) })
        #expect(backoff.consecutiveFailures == 9)
    }

    @Test func delayForFailures() {
        let backoff = CrashBackoff()
        #expect(backoff.delay(forFailures: 0) == .zero)
        #expect(backoff.delay(forFailures: -3) == .zero)
        #expect(backoff.delay(forFailures: 1) == .seconds(1))
        #expect(backoff.delay(forFailures: 6) == .seconds(32))
        #expect(backoff.delay(forFailures: 7) == .seconds(60))
        // Far past the cap, and past any doubling that would overflow.
        #expect(backoff.delay(forFailures: 100) == .seconds(60))
        #expect(backoff.delay(forFailures: Int.max) == .seconds(60))
    }

    @Test func customBaseAndCap() {
        var backoff = CrashBackoff(base: .milliseconds(500), cap: .seconds(3), stableAfter: .seconds(10))
        let delays = (0..<6).map { _ in backoff.workerFailed(uptime: .seconds(1)) }
        #expect(delays == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(3), .seconds(3), .seconds(3)])
    }

    @Test func capBelowBaseIsTheCap() {
        let backoff = CrashBackoff(base: .seconds(10), cap: .seconds(4))
        #expect(backoff.delay(forFailures: 1) == .seconds(4))
        #expect(backoff.delay(forFailures: 5) == .seconds(4))
    }

    @Test func aStableUptimeResetsTheCount() {
        var backoff = CrashBackoff()
        for _ in 0..<4 { _ = backoff.workerFailed(uptime: .seconds(2)) }
        #expect(backoff.consecutiveFailures == 4)
        // Up exactly `stableAfter`: stable, so this failure is the first of a new run.
        #expect(backoff.workerFailed(uptime: .seconds(30)) == .seconds(1))
        #expect(backoff.consecutiveFailures == 1)
        #expect(backoff.workerFailed(uptime: .seconds(29) + .milliseconds(999)) == .seconds(2))
        #expect(backoff.workerFailed(uptime: .seconds(3600)) == .seconds(1))
    }

    @Test func neverReadyDoesNotReset() {
        var backoff = CrashBackoff()
        _ = backoff.workerFailed(uptime: .seconds(5))
        _ = backoff.workerFailed(uptime: nil)
        #expect(backoff.workerFailed(uptime: nil) == .seconds(4))
        #expect(backoff.consecutiveFailures == 3)
    }

    @Test func crashLoopingFromThreeFailures() {
        var backoff = CrashBackoff()
        #expect(CrashBackoff.crashLoopThreshold == 3)
        #expect(!backoff.isCrashLooping)
        _ = backoff.workerFailed(uptime: nil)
        _ = backoff.workerFailed(uptime: nil)
        #expect(!backoff.isCrashLooping)
        _ = backoff.workerFailed(uptime: nil)
        #expect(backoff.isCrashLooping)
        _ = backoff.workerFailed(uptime: .seconds(31))
        #expect(!backoff.isCrashLooping)
    }

    @Test func workerStableResets() {
        var backoff = CrashBackoff()
        for _ in 0..<5 { _ = backoff.workerFailed(uptime: nil) }
        #expect(backoff.isCrashLooping)
        backoff.workerStable()
        #expect(backoff.consecutiveFailures == 0)
        #expect(!backoff.isCrashLooping)
        #expect(backoff.workerFailed(uptime: nil) == .seconds(1))
        #expect(
            backoff
                == {
                    var fresh = CrashBackoff()
                    _ = fresh.workerFailed(uptime: nil)
                    return fresh
                }())
    }
}
