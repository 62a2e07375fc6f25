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

        /// Under `strategy = "replace"` a slot being recycled has no serving worker until its new
        /// one is ready. That slot is the engine's (queued or recycling): another worker past its
        /// limit meanwhile is due at once, not only after the gap. It was not (every slot had to
        /// have a ready worker), so under fast leaks the others ran far past their limits.
        @Test("a worker past its limit while another slot's replace recycle is in its gap is queued then, not after the gap")
        func dueDuringAnotherSlotsGap() throws {
            let sections =
                BatonHarness.defaultSections
                + "\n[rolling]\nmax_requests = 200\nmax_requests_jitter = 0\nrecycle_concurrency = 1\n[deploy]\nstrategy = \"replace\"\n"
            // The replacement boots 4 s (the gap): long against the few hundred requests the
            // other worker needs to pass its limit, which all go to it (the only one accepting).
            let baton = try BatonHarness(
                workers: 2, command: [TestPaths.executable("baton-demo-worker"), "--boot-delay", "4"], sections: sections, tag: "mreqgap")
            defer { baton.stop() }
            // One keep-alive connection: one worker serves it and comes due first; once it drains,
            // the client reconnects to the other one.
            let load = LoadClient(port: baton.port, connections: 1, maxDuration: .seconds(120))
            defer { _ = load.stop() }
            let first = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("restart policy: worker") }
            let firstSlot = first.flatMap(Self.slot)
            try #require(firstSlot != nil, "\(baton.process.stderrLines.suffix(20))")
            // The next policy order (the other slot) and the first slot's new worker ready, in log order.
            let second = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("restart policy: worker") && Self.slot($0) != firstSlot }
            #expect(second != nil, "\(baton.process.stderrLines.suffix(20))")
            let lines = baton.process.stderrLines
            let start = lines.firstIndex { $0 == first } ?? 0
            let ordered = lines[start...].firstIndex { $0 == second }
            let gapEnded = lines[start...].firstIndex { $0.contains("worker ready after") && Self.slot($0) == firstSlot }
            #expect(ordered != nil && (gapEnded == nil || ordered! < gapEnded!), "\(lines[start...].prefix(40))")
            let report = load.stop()
            #expect(report.failed == 0, "\(report)")
        }

        /// The `slot=N` of a log line.
        static func slot(_ line: String) -> Int? {
            guard let r = line.range(of: " slot=") else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
    }
}
