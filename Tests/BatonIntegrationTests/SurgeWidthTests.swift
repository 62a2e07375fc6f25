import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension MemoryIntegration {
    /// `[deploy] max_surge = "auto"` (the default): after the canary, a deploy replaces as many
    /// slots at once as memory and the boot budget (CPUs over the CPU share of a boot) allow.
    @Suite("surge width from headroom")
    struct SurgeWidthTests {
        @Test("with memory to spare, the default deploy surges every slot left at once after the canary (boots that wait take no CPU), 0 failed requests")
        func autoWidth() throws {
            let baton = try BatonHarness(workers: 4, command: [TestPaths.executable("baton-demo-worker"), "--boot-delay", "0.3"], tag: "sw")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(120))
            #expect(load.waitForProgress(100))
            let release = baton.makeRelease("r2")
            let result = try baton.cli(["deploy", "--release", release])
            #expect(load.waitForProgress(100))
            let report = load.stop()
            print("auto-width deploy:\n\(result.stdout)")
            #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
            // The demo worker's boot sleeps: the boot budget measured at start-up is far above
            // one boot per CPU, and the other slots boot beside the canary, so all three start
            // before the canary is ready (before: after it passed, and one boot per CPU).
            #expect(result.stdout.contains("surge, 4 slots at once (auto: "), "\(result.stdout)")
            // The canary is the slot whose worker grew most (deploy order): read which one it is.
            let header = try #require(result.stdout.split(separator: "\n").first.map(String.init))
            let marker = try #require(header.firstRange(of: "canary slot "), "\(header)")
            let canary = "slot " + header[marker.upperBound...].prefix { $0.isNumber } + ":"
            let lines = result.stdout.split(separator: "\n").map { String($0.drop { $0 == " " }) }
            let canaryReady = try #require(lines.firstIndex { $0.hasPrefix(canary) && $0.contains(" ready after ") }, "\(result.stdout)")
            let started = lines[..<canaryReady].filter { !$0.hasPrefix(canary) && $0.contains("starting a new worker") }
            #expect(started.count == 3, "\(result.stdout)")
            // None of them drained its old worker before the canary passed its window.
            let canaryStable = try #require(lines.firstIndex { $0.hasPrefix(canary) && $0.contains(" stable for ") }, "\(result.stdout)")
            #expect(!lines[..<canaryStable].contains { !$0.hasPrefix(canary) && $0.contains("draining") }, "\(result.stdout)")
            #expect(report.failed == 0, "\(report)")
            let after = try baton.status()
            #expect(after.workers.allSatisfy { $0.release == release && $0.state == "ready" }, "\(after.workers)")
            #expect(Set(ProcessWatch.liveChildren(of: baton.process.pid)) == Set(after.workers.map(\.pid)))
        }

        @Test("a budget with room for one more worker, not two: the auto width narrows to one slot at a time, 0 failed requests")
        func tightBudgetNarrowsToOne() throws {
            // Three workers of ~21 MiB (PSS) under 95 MiB: ~30 MiB of headroom, one more fits.
            let baton = try BatonHarness(
                workers: 3, command: [TestPaths.executable("baton-demo-worker"), "--hold", "20"],
                sections: MemoryTests.sections("budget = \"95MiB\"\ncheck_interval = \"1h\""), tag: "swt")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 4, maxDuration: .seconds(120))
            #expect(load.waitForProgress(100))
            let result = try baton.cli(["deploy", "--release", baton.makeRelease("r2")])
            #expect(load.waitForProgress(100))
            let report = load.stop()
            print("tight-budget deploy:\n\(result.stdout)")
            #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stdout.contains("surge, 1 slot at once (auto: 1 more fit"), "\(result.stdout)")
            #expect(report.failed == 0, "\(report)")
            #expect(try baton.status().workers.allSatisfy { $0.release.hasSuffix("/r2") })
        }
    }
}
