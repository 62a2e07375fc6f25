import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension MemoryIntegration {
    /// The restart policy never stays stuck, follows a reload, and its surge is honoured.
    @Suite("restart policy lifecycle")
    struct PolicyLifecycleTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }

        static let sections = """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            timeout = "20s"
            [memory]
            check_interval = "300ms"
            min_worker_age = "1s"
            """

        @Test("reload with a new [rolling] max_age: the policy then restarts workers by age")
        func reloadAppliesRolling() throws {
            let baton = try BatonHarness(workers: 2, sections: Self.sections, tag: "rage")
            defer { baton.stop() }
            // A deploy long enough for memory checks to run: the policy exists with the settings
            // baton started with (none for [rolling]) before the reload.
            let first = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", Self.worker, "--boot-delay", "0.5"])
            #expect(first.code == 0, "\(first.stderr)")
            let text = try #require(ProcFS.read(baton.configPath))
            TestPaths.write(baton.configPath, text + "\n[rolling]\nmax_age = \"3s\"\n")
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            let fired = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("restart policy:") && $0.contains("reason=age") }
            #expect(fired != nil, "\(baton.process.stderrLines.suffix(10))")
        }

        @Test("reload says which settings need a restart of baton, and keeps the state directory it opened")
        func reloadReportsRestartOnly() throws {
            let baton = try BatonHarness(workers: 1, sections: Self.sections, tag: "rrst")
            defer { baton.stop() }
            let text = try #require(ProcFS.read(baton.configPath))
            TestPaths.write(baton.configPath, text.replacingFirst("/state\"", with: "/state2\""))
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            #expect(reload.stdout.contains("[app] state_directory changed: needs a restart of baton"), "\(reload.stdout)")
            let r2 = baton.makeRelease("r2")
            #expect(try baton.cli(["deploy", "--release", r2]).code == 0)
            #expect((ProcFS.read(baton.directory + "/state/release.json") ?? "").contains(r2))
        }

        @Test("a policy restart that cannot start frees the policy: once the cause is gone it restarts again")
        func failedPolicyStartIsNotStuck() throws {
            let directory = TestPaths.temporaryDirectory("pstk")
            let envFile = directory + "/app.env"
            TestPaths.write(envFile, "A=1\n")
            let baton = try BatonHarness(
                workers: 2, extraApp: "environment_file = \"\(envFile)\"",
                sections: Self.sections + "\n[rolling]\nmax_age = \"2s\"\n", tag: "pstk", reuse: directory)
            defer { baton.stop() }
            // The environment file disappears: the policy's next restart cannot even build its worker.
            #expect(unlink(envFile) == 0)
            let failed = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("policy failed, nothing changed") }
            #expect(failed != nil, "\(baton.process.stderrLines.suffix(10))")
            TestPaths.write(envFile, "A=1\n")
            let finished = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("policy finished") }
            #expect(finished != nil, "\(baton.process.stderrLines.suffix(10))")
        }

        @Test("a failed replacement is no restart: RESTARTS and LAST REASON change only when a new worker serves")
        func failedReplacementIsNotARestart() throws {
            let baton = try BatonHarness(workers: 1, sections: Self.sections, tag: "fcnt")
            defer { baton.stop() }
            let result = try baton.cli(["deploy", "--release", baton.makeRelease("bad"), "--command", Self.worker, "--fail-boot"])
            #expect(result.code == 1)
            let slot = try #require(try baton.status().workers.first)
            #expect(slot.restarts == 0, "\(slot)")
            #expect(slot.lastRestartReason == nil, "\(slot)")
        }

        @Test("the policy's auto strategy checks its own surge of 1, not max_surge: one extra worker fits, so it surges")
        func policySurgeWidth() throws {
            // Three workers of ~61 MiB under a 290 MiB budget: ~105 MiB of headroom, room for
            // one more worker (the policy's surge), not for max_surge = 3 of them.
            let baton = try BatonHarness(
                workers: 3, command: [Self.worker, "--hold", "60"],
                sections: Self.sections + "\nbudget = \"290MiB\"\n[deploy]\nmax_surge = 3\n[rolling]\nmax_age = \"2s\"\n",
                tag: "psrg")
            defer { baton.stop() }
            let started = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("policy started") }
            #expect(started?.contains("strategy=surge") == true, "\(started ?? "no policy started")")
        }

        @Test("--dry-run with strategy auto plans the surge width asked for (--max-surge)")
        func autoHonoursSurgeWidth() throws {
            let baton = try BatonHarness(workers: 3, tag: "asrg")
            defer { baton.stop() }
            let plan = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--max-surge", "3", "--dry-run"])
            #expect(plan.code == 0, "\(plan.stderr)")
            #expect(plan.stdout.contains("strategy: surge, 3 slots at once (auto: 3 more fit"), "\(plan.stdout)")
        }
    }
}
