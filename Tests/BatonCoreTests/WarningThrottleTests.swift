import BatonCore
import Testing

@Suite struct WarningThrottleTests {
    @Test func oneWarningPerIntervalWithTheCountHeldBack() {
        var t = WarningThrottle(interval: .seconds(10))
        #expect(t.admit(now: .seconds(100)) == 0)
        #expect(t.admit(now: .seconds(100)) == nil)
        #expect(t.admit(now: .seconds(109)) == nil)
        #expect(t.held == 2)
        #expect(t.admit(now: .seconds(110)) == 2)
        #expect(t.held == 0)
        #expect(t.admit(now: .seconds(115)) == nil)
        // A quiet source is warned about at once, with nothing held back but the one.
        #expect(t.admit(now: .seconds(200)) == 1)
        #expect(t.admit(now: .seconds(300)) == 0)
    }
}
