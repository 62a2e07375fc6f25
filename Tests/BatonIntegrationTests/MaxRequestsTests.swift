import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// `[rolling] max_requests`: a worker that reports (X_BATON_REQUESTS=) serving its limit is
    /// replaced with zero downtime.
    @Suite("max_requests")
    struct MaxRequestsTests {
        @Test("a worker reporting max_requests served is recycled (reason max-requests), 0 failed requests")
        func recycledByCount() throws {
            let baton = try BatonHarness(
                workers: 2, sections: BatonHarness.defaultSections + "\n[rolling]\nmax_requests = 300\nmax_requests_jitter = 50\n", tag: "mreq")
            defer { baton.stop() }
            let before = Set(try baton.status().workers.map(\.pid))
            let load = LoadClient(port: baton.port, connections: 4, maxDuration: .seconds(120))
            // The demo worker reports every 64 requests: a slot is recycled once it passed 300–350.
            let recycled = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("restart policy: worker") && $0.contains("reason=max-requests") }
            #expect(recycled != nil, "\(baton.process.stderrLines.suffix(20))")
            var after: StatusReport?
            let deadline = monotonicNow() + .seconds(60)
            while monotonicNow() < deadline {
                let s = try baton.status()
                if s.workers.contains(where: { $0.lastRestartReason == "max-requests" && $0.state == "ready" && !before.contains($0.pid) }) {
                    after = s
                    break
                }
                _ = poll(nil, 0, 50)
            }
            #expect(load.waitForProgress(100))
            let report = load.stop()
            #expect(report.failed == 0, "\(report)")
            let workers = after?.workers ?? []
            #expect(workers.contains { $0.lastRestartReason == "max-requests" }, "\(workers)")
            // Every serving worker shows its count and its limit within max_requests + jitter.
            #expect(workers.allSatisfy { ($0.requestLimit ?? 0) >= 300 && ($0.requestLimit ?? 0) <= 350 }, "\(workers)")
        }
    }
}
