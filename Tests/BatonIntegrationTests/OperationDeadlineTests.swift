import BatonCore
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// A client's `--timeout` counts from the request, whether the operation runs at once or waits
    /// behind another one (or behind a start-up that cannot finish).
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

        @Test("a deploy queued with --wait behind a slow deploy times out while it waits (exit 4)")
        func queuedBehindAnotherDeploy() throws {
            let sections = """
                [listen]
                addresses = ["127.0.0.1:0"]
                [readiness]
                mode = "delay"
                delay = "3s"
                timeout = "20s"
                [deploy]
                canary = false
                """
            let baton = try BatonHarness(workers: 1, sections: sections, tag: "dl2")
            defer { baton.stop() }
            let first = try baton.startCLI(["deploy", "--release", baton.makeRelease("r2")])
            defer { _ = first.wait(timeout: .seconds(60)) }
            #expect(first.waitForStdout(containing: "starting a new worker", timeout: .seconds(20)))
            let second = try baton.cli(["deploy", "--wait", "--release", baton.makeRelease("r3"), "--timeout", "500ms"], timeout: .seconds(60))
            #expect(second.code == 4, "\(second.stdout)\n\(second.stderr)")
            #expect(second.stdout.contains("waiting: a deploy is in progress"), "\(second.stdout)")
            // It timed out while it waited: it never started a worker.
            #expect(second.stderr.contains("passed while it waited for a deploy"), "\(second.stderr)")
            #expect(!second.stdout.contains("starting a new worker"), "\(second.stdout)")
            #expect(first.wait(timeout: .seconds(60)) == 0)
        }
    }
}
