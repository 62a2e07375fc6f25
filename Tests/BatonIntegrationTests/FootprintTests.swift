import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension MemoryIntegration {
    /// The new-worker footprint of a preforking server: its whole tree, once settled.
    @Suite("footprint")
    struct FootprintTests {
        @Test("a server that forks after ready is measured as its settled tree, not as the grown workers it becomes")
        func preforkingServerSettledTree() throws {
            let marks = TestPaths.temporaryDirectory("prefork")
            // Ready after 300 ms as a lone shell; 1 s later it forks two children of 24 MiB each;
            // once the test has seen both trees settle (it then creates `grow`), each child grows
            // by 64 MiB more and says so on its output (baton logs it).
            let script = marks + "/server.sh"
            TestPaths.write(
                script,
                """
                #!/bin/sh
                sleep 1
                for n in 1 2; do
                  perl -e 'my $a = "x" x (24 << 20); select(undef, undef, undef, 0.05) until -e "\(marks)/grow"; my $b = "y" x (64 << 20); $| = 1; print "grown-$$\\n"; sleep 100000' &
                done
                exec sleep 100000
                """, mode: 0o755)
            let baton = try BatonHarness(
                workers: 2, command: [script],
                sections: MemoryIntegration.OOMTests.sections, tag: "fp")
            defer {
                baton.stop()
                TestPaths.remove(marks)
            }
            var settled: [String] = []
            for _ in 0..<2 {
                let line = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("footprint settled") && !settled.contains($0) }
                settled.append(try #require(line, "\(baton.process.stderrLines.suffix(10))"))
            }
            #expect(settled.allSatisfy { $0.contains("over 3 process(es)") }, "\(settled)")
            // Both trees settled: let the four children grow, and wait until they have.
            TestPaths.write(marks + "/grow", "")
            var grown: [String] = []
            for _ in 0..<4 {
                let line = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("] grown-") && !grown.contains($0) }
                grown.append(try #require(line, "\(baton.process.stderrLines.suffix(10))"))
            }
            let result = try baton.cli(["preflight", "--json"])
            let last = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
            let report = try #require(try? JSONDecoder().decode(ControlReply.self, from: Data(last.utf8)).preflight, "\(result.stdout)")
            let footprint = try #require(report.footprintBytes)
            let status = try baton.status()
            let running = status.workers.compactMap(\.pssBytes)
            print("prefork footprint: \(footprint >> 20) MiB; running workers' PSS: \(running.map { $0 >> 20 }) MiB; \(settled)")
            // The children's memory is in it (2 × 24 MiB) ...
            #expect(footprint >= 48 << 20)
            // ... and the growth after settling is not (each running tree grew by 2 × 64 MiB).
            #expect(running.count == 2)
            #expect(running.allSatisfy { footprint + (100 << 20) < $0 }, "\(footprint) vs \(running)")
        }
    }
}
