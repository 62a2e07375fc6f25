import BatonCore
import Testing

@Suite("RequestRecycler")
struct RequestRecyclerTests {
    private func workers(_ counts: [Int?], ready: Bool = true) -> [RequestRecycler.Worker] {
        counts.enumerated().map { RequestRecycler.Worker(slot: $0.offset, pid: Int32(1000 + $0.offset), ready: ready, requests: $0.element) }
    }

    @Test func aWorkerPastItsLimitIsRecycledTheFurthestFirst() {
        var r = RequestRecycler(maxRequests: 100)
        #expect(r.decide(now: .seconds(1), workers: workers([50, 99, nil]), operationRunning: false) == nil)
        let d = r.decide(now: .seconds(2), workers: workers([100, 130, 120]), operationRunning: false)
        #expect(d?.slot == 1)
        #expect(d?.detail == "worker 1001 served 130 requests (max_requests 100, its limit 100)")
    }

    @Test func offWhenZeroAndSilentDuringOperationsOrWithASlotNotReady() {
        var off = RequestRecycler(maxRequests: 0)
        #expect(off.decide(now: .seconds(1), workers: workers([1_000_000]), operationRunning: false) == nil)
        var r = RequestRecycler(maxRequests: 10)
        #expect(r.decide(now: .seconds(1), workers: workers([20]), operationRunning: true) == nil)
        #expect(r.decide(now: .seconds(1), workers: workers([20], ready: false), operationRunning: false) == nil)
        #expect(r.decide(now: .seconds(1), workers: [], operationRunning: false) == nil)
        #expect(r.decide(now: .seconds(1), workers: workers([20]), operationRunning: false)?.slot == 0)
    }

    @Test func theSpacingHoldsTheNextRecycleBack() {
        var r = RequestRecycler(maxRequests: 10, minSpacing: .seconds(5))
        #expect(r.decide(now: .seconds(10), workers: workers([20, 20]), operationRunning: false)?.slot != nil)
        #expect(r.decide(now: .seconds(14), workers: workers([0, 20]), operationRunning: false) == nil)
        #expect(r.decide(now: .seconds(15), workers: workers([0, 20]), operationRunning: false)?.slot == 1)
    }

    @Test func jitterSpreadsLimitsWithinTheRangeStablyPerPid() {
        let r = RequestRecycler(maxRequests: 3000, jitter: 300)
        let limits = (1000..<1100).map { r.limit(pid: Int32($0)) }
        #expect(limits.allSatisfy { (3000...3300).contains($0) })
        #expect(Set(limits).count > 50, "\(Set(limits).count) distinct limits")
        #expect(r.limit(pid: 4242) == r.limit(pid: 4242))
        #expect(RequestRecycler(maxRequests: 3000).limit(pid: 4242) == 3000)
    }

    /// `jitter + 1` trapped at Int.max (the daemon died rendering its status); the sum saturates.
    @Test func limitsAtTheExtremesDoNotOverflow() {
        let r = RequestRecycler(maxRequests: Int.max, jitter: Int.max)
        for pid: Int32 in [1, 4242, Int32.max] { #expect(r.limit(pid: pid) == Int.max) }
        let jitterOnly = RequestRecycler(maxRequests: 1, jitter: Int.max)
        #expect(jitterOnly.limit(pid: 4242) >= 1)
    }
}
