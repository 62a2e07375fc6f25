import BatonCore
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// A client's `--timeout` counts from the request, whether the operation runs at once or waits
    /// behind another one (or behind a start-up that cannot finish). The rule itself, behind a
    /// deploy and behind a start-up, is `SupervisorOverlapTests.queuedDeployExpiresAtItsClientDeadline`
    /// and `SupervisorReadinessTests.deployQueuedBehindAStartUpThatNeverFinishesExpires`
    /// (BatonDaemonTests); this end-to-end test keeps the CLI's side: the progress line, exit 4.
    @Suite("operation deadlines")
    struct OperationDeadlineTests {
        @Test("a deploy queued behind a start-up that does not finish times out (exit 4), nothing changed")
        func queuedBehindAStartUp() throws {
            // The worker never says READY=1 (and does not fail): start-up goes on, the deploy waits behind it.
            let sections = """
                [listen]
                addresses = ["127.0.0.1:0"]
                [readiness]
                mode = "notify"
                timeout = "60s"
                """
            let baton = try BatonHarness(workers: 1, command: ["/bin/sleep", "1000"], sections: sections, waitReady: false, tag: "dl")
            defer { baton.stop() }
            let release = baton.makeRelease("r2")
            let deploy = try baton.cli(["deploy", "--release", release, "--timeout", "1s"], timeout: .seconds(60))
            #expect(deploy.code == 4, "\(deploy.stdout)\n\(deploy.stderr)")
            #expect(deploy.stdout.contains("waiting: a start-up is in progress"), "\(deploy.stdout)")
            #expect(deploy.stderr.contains("passed while it waited for a start-up: not started, nothing changed"), "\(deploy.stderr)")
            // The daemon still answers, and nothing was deployed.
            let status = try baton.status()
            #expect(status.release == baton.releaseDirectory)
            #expect(status.operation == nil)
        }
    }
}
