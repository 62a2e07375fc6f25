import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// The replace strategy leaves each slot served by its new worker, so the next rollout
    /// (of any strategy) drains it; found by the deploy-memory benchmark, where a deploy after a
    /// replace deploy started new workers beside the old ones and never stopped the old ones.
    @Suite("replace strategy")
    struct ReplaceStrategyTests {
        @Test("a deploy after a replace deploy drains the replace deploy's workers: baton keeps N children")
        func deployAfterReplace() throws {
            let baton = try BatonHarness(workers: 2, tag: "repl")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 4, maxDuration: .seconds(120))
            #expect(load.waitForProgress(50))
            for (name, strategy) in [("r2", "replace"), ("r3", "surge"), ("r4", "replace"), ("r5", "replace")] {
                let before = Set(try baton.status().workers.map(\.pid))
                let release = baton.makeRelease(name)
                let result = try baton.cli(["deploy", "--release", release, "--strategy", strategy])
                #expect(result.code == 0, "\(strategy): \(result.stdout) \(result.stderr)")
                let after = try baton.status()
                #expect(after.workers.count == 2, "\(strategy): \(after.workers)")
                #expect(after.workers.allSatisfy { $0.release == release && $0.state == "ready" }, "\(strategy): \(after.workers)")
                #expect(Set(after.workers.map(\.pid)).isDisjoint(with: before), "\(strategy)")
                #expect(after.workers.allSatisfy { $0.lastRestartReason == "deploy" }, "\(strategy): \(after.workers)")
                // The old workers are gone: only the two new ones are baton's children.
                #expect(Set(ProcessWatch.liveChildren(of: baton.process.pid)) == Set(after.workers.map(\.pid)), "\(strategy)")
                #expect(load.waitForProgress(50))
            }
            let report = load.stop()
            #expect(report.failed == 0, "\(report)")
        }
    }
}
