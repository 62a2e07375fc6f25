import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// Refork with the Ruby adapter (adapters/ruby/baton-mold, puma single mode) end to end:
    /// real baton, real forked puma workers, real load.
    @Suite("mold mode: Ruby refork by requests", .serialized)
    struct MoldRubyReforkTests {
        static let rackApp = """
            run ->(env) { [200, { "content-type" => "text/plain" }, ["hello pid=#{Process.pid} release=#{File.basename(Dir.pwd)}\\n"]] }
            """

        @Test("the Ruby adapter's workers report their requests, so refork_after_requests promotes one: every slot rolled onto it, 0 failed requests")
        func reforkAfterRequests() throws {
            let check = try TestProcess.run(["/usr/bin/env", "ruby", "-e", "require 'puma'"], timeout: .seconds(30))
            guard check.code == 0 else { throw HarnessError("ruby has no puma: run scripts/install-deps (\(check.stderr))") }
            // queue_requests false: no keep-alive buffering, the setting the bench runs puma with.
            let baton = try BatonHarness(
                workers: 2, command: ["ruby", adaptersFolder + "/ruby/baton-mold", "config.ru"],
                extraApp: "mode = \"mold\"\n[app.environment]\nPUMA_QUEUE_REQUESTS = \"false\"\nPUMA_MAX_THREADS = \"2\"",
                sections: BatonHarness.defaultSections + "\n[mold]\nstart_timeout = \"30s\"\nrefork_after_requests = 300", tag: "rubyrefork",
                beforeStart: { TestPaths.write($0 + "/releases/r1/config.ru", Self.rackApp) })
            defer { baton.stop() }
            let before = try baton.status()
            let firstMold = try #require(before.molds?.first)
            let load = LoadClient(port: baton.port, connections: 4, maxDuration: .seconds(120))
            #expect(load.waitForProgress(200))
            let counted = baton.waitForStatus { s in s.workers.contains { ($0.requests ?? 0) > 0 } }
            #expect(counted != nil, "status shows the requests a worker reported (X_BATON_REQUESTS=)")
            let newMold = try SecondIntegration.MoldTests.awaitRefork(baton, before: before, promotion: .seconds(60))
            #expect(load.waitForProgress(200))
            let report = load.stop()
            #expect(report.failed == 0, "\(report)")
            let after = try #require(baton.waitForStatus { $0.molds?.count == 1 && $0.workers.allSatisfy { $0.state == "ready" } })
            #expect(after.molds?.first?.pid == newMold)
            #expect(ProcessWatch.waitReaped(firstMold.pid, timeout: .seconds(10)), "the first mold was retired")
            #expect(after.workers.allSatisfy { !before.workers.map(\.pid).contains($0.pid) })
            #expect(SecondIntegration.MoldTests.zombieChildren(of: baton.process.pid).isEmpty)
        }
    }
}
