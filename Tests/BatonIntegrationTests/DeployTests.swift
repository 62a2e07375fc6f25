import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension SecondIntegration {
    /// `baton deploy` end to end: real daemon, real workers, bounded load.
    @Suite("baton deploy")
    struct DeployTests {
        static let worker = TestPaths.executable("baton-demo-worker")
        /// The default sections with a 500 ms stability window, for the tests timed against it:
        /// workers that crash 0.45 s after READY (`--crash-after 0.45`), a 1 s deadline.
        static let halfSecondWindow = BatonHarness.defaultSections + "\n[deploy]\nstability_window = \"500ms\""

        /// A habits audit: a command behind a shell without `exec` (a wrapper script, `sh -c`, a
        /// pipeline) lost its drain: the shell died of SIGTERM at once, baton SIGKILLed the rest
        /// of its group, the app among them with requests in flight (2 of 6 failed), and said
        /// "drained in 2ms".
        @Test("three consecutive deploys under 16 keep-alive connections: 0 failed, every worker replaced, responses switch releases")
        func threeDeploysUnderLoad() throws {
            let baton = try BatonHarness(workers: 4, tag: "dep3")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 16, maxDuration: .seconds(120))
            #expect(load.waitForProgress(300))
            var releases = [baton.releaseDirectory]
            for name in ["r2", "r3", "r4"] {
                let before = Set(try baton.status().workers.map(\.pid))
                let release = baton.makeRelease(name)
                let result = try baton.cli(["deploy", "--release", release])
                #expect(result.code == 0, "\(result.stderr)")
                #expect(result.stdout.contains("deploy finished: 4 workers on \(release)"))
                #expect(result.stdout.contains("ready after"))
                #expect(result.stdout.contains("drained in"))
                let after = try baton.status()
                #expect(after.workers.count == 4)
                #expect(after.workers.allSatisfy { $0.release == release && $0.state == "ready" })
                #expect(Set(after.workers.map(\.pid)).isDisjoint(with: before))
                #expect(after.release == release)
                releases.append(release)
                #expect(load.waitForProgress(300))
            }
            let report = load.stop()
            print("three deploys under load: \(report)")
            #expect(report.failed == 0, "\(report)")
            #expect(report.releases == releases)
            let history = try baton.cli(["history", "--json"])
            #expect(history.stdout.components("\"outcome\" : \"succeeded\"") == 3)
        }

        @Test("a release whose workers never become ready: the canary fails, no old worker is touched, exit 1 with its output")
        func canaryNeverReady() throws {
            let baton = try BatonHarness(
                workers: 3,
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    timeout = "1s"
                    """, tag: "canary")
            defer { baton.stop() }
            let before = try baton.status().workers
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(60))
            #expect(load.waitForProgress(100))
            let release = baton.makeRelease("bad")
            let result = try baton.cli(["deploy", "--release", release, "--command", Self.worker, "--never-ready"])
            let report = load.stop()
            #expect(result.code == 1)
            #expect(result.stderr.contains("readiness-timeout"), "\(result.stderr)")
            #expect(result.stderr.contains("nothing changed"))
            #expect(result.stderr.contains("  | baton-demo-worker["), "the worker's output is printed")
            // The canary is the slot with the largest memory growth (any of them under load).
            // Other slots' new workers may boot beside it (surge), but no old worker is drained.
            let lines = result.stdout.split(separator: "\n")
            let canary = try #require(lines.first?.split(separator: "canary slot ").last?.prefix { $0.isNumber }, "\(result.stdout)")
            #expect(!lines.contains { $0.contains("draining") || $0.contains("drained") }, "\(result.stdout)")
            #expect(result.stdout.contains("slot \(canary): starting"), "\(result.stdout)")
            #expect(report.failed == 0, "\(report)")
            let after = try baton.status()
            #expect(after.workers.map(\.pid) == before.map(\.pid))
            #expect(after.release == baton.releaseDirectory)
        }

        @Test("a release that crashes after becoming ready, mid-rollout: every slot rolled back, 0 failed requests, exit 1")
        func crashAfterReadyRollsBack() throws {
            // Workers that crash 0.45 s after READY: inside a 500 ms window, past the tests' default.
            let baton = try BatonHarness(workers: 4, sections: Self.halfSecondWindow, tag: "crash")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 16, maxDuration: .seconds(60))
            #expect(load.waitForProgress(200))
            let release = baton.makeRelease("crashy")
            let result = try baton.cli([
                "deploy", "--release", release, "--command", Self.worker, "--boot-delay", "0.3", "--crash-after", "0.45",
            ])
            #expect(load.waitForProgress(200))
            let report = load.stop()
            print("crash mid-rollout: \(report)")
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("exited after becoming ready"))
            #expect(result.stderr.contains("rolled back"))
            #expect(result.stdout.contains("rolling back slots"))
            #expect(report.failed == 0, "\(report)")
            let after = try baton.status()
            #expect(after.workers.count == 4)
            #expect(after.workers.allSatisfy { $0.release == baton.releaseDirectory && $0.state == "ready" }, "\(after.workers)")
            #expect(after.release == baton.releaseDirectory)
        }

        @Test("--dry-run changes nothing; a concurrent deploy is refused, --wait queues it; a killed CLI does not stop the deploy")
        func overlapsAndDetach() throws {
            let baton = try BatonHarness(workers: 2, tag: "ovl")
            defer { baton.stop() }
            // r2's workers boot until the test opens the gate, once `--attach` is attached to r2's
            // deploy: a fixed boot delay let that deploy finish first on a loaded machine, and
            // `--attach` then attached to the queued r3 deploy. The wait is bounded (60 s).
            let gate = baton.directory + "/open-r2"
            let script = baton.directory + "/gated-worker.sh"
            TestPaths.write(
                script,
                "#!/bin/sh\nn=0\nwhile [ ! -e '\(gate)' ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done\nexec '\(Self.worker)'\n",
                mode: 0o755)
            let slow = [script]
            let r2 = baton.makeRelease("r2")
            let r3 = baton.makeRelease("r3")
            let before = try baton.status().workers.map(\.pid)
            let dry = try baton.cli(["deploy", "--release", r2, "--dry-run"])
            #expect(dry.code == 0)
            #expect(dry.stdout.contains("slot 1: pid \(before[1])"))
            #expect(dry.stdout.contains("dry run: nothing changed"))
            #expect(try baton.status().workers.map(\.pid) == before)

            let first = try baton.startCLI(["deploy", "--release", r2, "--command"] + slow)
            #expect(first.waitForStdout(containing: "slot 0: starting", timeout: .seconds(10)))
            let refused = try baton.cli(["deploy", "--release", r3])
            #expect(refused.code == 1)
            #expect(refused.stderr.contains("deploy in progress"))
            // A dry run of it fails as it would (a CI gate on the dry run passed with exit 0):
            // the plan on stdout, the refusal as its error line.
            let dryRefused = try baton.cli(["deploy", "--release", r3, "--dry-run"])
            #expect(dryRefused.code == 1)
            #expect(dryRefused.stdout.contains("now: it would be refused: deploy in progress"), "\(dryRefused.stdout)")
            #expect(
                dryRefused.stderr.contains("dry run: nothing changed; the deploy would be refused: deploy in progress (of \(r2))"),
                "\(dryRefused.stderr)")
            let queued = try baton.startCLI(["deploy", "--wait", "--release", r3])
            #expect(queued.waitForStdout(containing: "waiting: a deploy is in progress", timeout: .seconds(10)))
            // Ctrl-C / a dropped ssh: the first client dies, its deploy goes on; it says so on
            // its way out (a systemd/CI audit: it ended silently with 130), and dies of the
            // signal, so that a shell running it stops too (a CI audit: with exit 130 the
            // script went on and said the deploy had failed).
            first.signal(SIGINT)
            #expect(first.wait(timeout: .seconds(5)) == 130)
            #expect(first.killedBy == SIGINT)
            // Its own deploy's attach, on its daemon (a CI audit: a queued job told `baton deploy
            // --attach` followed the deploy ahead of it, exit 0, while its own release failed).
            #expect(
                first.stderrLines.contains(
                    "baton: interrupted: the deploy goes on in baton; follow it with `baton deploy --attach --release \(r2) --socket \(baton.controlSocket)`, see it with `baton status`"
                ),
                "\(first.stderrLines)")
            let attached = try baton.startCLI(["deploy", "--attach"])
            #expect(attached.waitForStdout(containing: "deploy of \(r2)", timeout: .seconds(10)), "\(attached.stdout)")
            TestPaths.write(gate, "")
            let attachedCode = attached.wait(timeout: .seconds(60)) ?? attached.stop()
            #expect(attachedCode == 0, "\(attached.stderrLines)")
            #expect(attached.stdout.contains("deploy finished: 2 workers on \(r2)"), "\(attached.stdout)")
            #expect(queued.wait(timeout: .seconds(30)) == 0)
            #expect(queued.stdout.contains("deploy finished: 2 workers on \(r3)"))
            let status = try baton.status()
            #expect(status.release == r3)
            let history = try baton.cli(["history"])
            #expect(history.stdout.contains(r2) && history.stdout.contains(r3))
        }

        @Test("--timeout aborts, rolls back and exits 4")
        func timeoutRollsBack() throws {
            // A 0.6 s canary boot and a 500 ms window: the 1 s deadline passes inside the window.
            let baton = try BatonHarness(workers: 2, sections: Self.halfSecondWindow, tag: "tmo")
            defer { baton.stop() }
            let release = baton.makeRelease("slow")
            let result = try baton.cli(["deploy", "--release", release, "--timeout", "1s", "--command", Self.worker, "--boot-delay", "0.6"])
            #expect(result.code == 4, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("deadline of 1s passed"))
            let status = try baton.status()
            #expect(status.workers.allSatisfy { $0.release == baton.releaseDirectory && $0.state == "ready" })
            #expect(status.release == baton.releaseDirectory)
        }

        @Test("the release persists across a restart of baton; baton rollback goes back")
        func persistenceAndRollback() throws {
            let first = try BatonHarness(workers: 2, tag: "pers")
            let r2 = first.makeRelease("r2")
            let deployed = try first.cli(["deploy", "--release", r2])
            #expect(deployed.code == 0)
            first.stop(keepDirectory: true)
            // With baton stopped, `history --config` reads the state directory (a day-2 audit:
            // "cannot reach the daemon", exit 3); `--socket` names none: exit 3.
            let stopped = try first.cli(["history", "--config", first.configPath], socket: false)
            #expect(stopped.code == 0 && stopped.stdout.contains("deploy    succeeded") && stopped.stdout.contains(r2), "\(stopped.stdout)")
            #expect(stopped.stderr.contains("cannot reach the daemon at"))
            #expect(stopped.stderr.contains("its history as \(first.directory)/state/history.jsonl keeps it"))
            #expect(try first.cli(["history"]).code == 3)
            // One that recorded nothing yet: an empty list (a re-audit: exit 3).
            let history = first.directory + "/state/history.jsonl"
            #expect(rename(history, history + ".kept") == 0)
            let none = try first.cli(["history", "--config", first.configPath], socket: false)
            #expect(none.code == 0 && none.stdout.hasPrefix("WHEN (UTC)") && !none.stdout.contains("deploy"), "exit \(none.code): \(none.stdout)")
            // One that cannot be read (a folder in its place): exit 3 naming it (a state audit:
            // an empty list, exit 0).
            #expect(mkdir(history, 0o755) == 0)
            let folder = try first.cli(["history", "--config", first.configPath], socket: false)
            #expect(folder.code == 3 && folder.stderr.contains("; \(history): Is a directory"), "exit \(folder.code): \(folder.stderr)")
            #expect(rmdir(history) == 0)
            #expect(rename(history + ".kept", history) == 0)
            // Another app's config on this state directory: refused, as serve refuses it (a
            // multi-app audit: this app's history, exit 0).
            let other = first.directory + "/other.toml"
            TestPaths.write(other, (ProcFS.read(first.configPath) ?? "").replacing("name = \"test\"", with: "name = \"other\""))
            let wrong = try first.cli(["history", "--config", other], socket: false)
            #expect(wrong.code == 2 && wrong.stderr.contains("holds the release state of app \"test\""), "exit \(wrong.code): \(wrong.stderr)")
            #expect(!wrong.stdout.contains("deploy"))
            // The same through `--app NAME` (its state directory /var/lib/baton/NAME, here a
            // copy bind-mounted over /var/lib in a mount namespace of its own): a re-audit.
            let lib = first.directory + "/lib"
            let copied = try TestProcess.run(["/bin/sh", "-c", "mkdir -p '\(lib)/baton' && cp -a '\(first.directory)/state' '\(lib)/baton/other'"])
            #expect(copied.code == 0, "\(copied.stderr)")
            let byApp = try TestProcess.run([
                "/usr/bin/unshare", "-m", "/bin/sh", "-c",
                "mount --make-rprivate / && mount --bind '\(lib)' /var/lib && exec '\(TestPaths.executable("baton"))' history --app other",
            ])
            #expect(byApp.code == 2 && byApp.stderr.contains("holds the release state of app \"test\""), "exit \(byApp.code): \(byApp.stderr)")
            let second = try BatonHarness(workers: 2, tag: "pers", reuse: first.directory)
            defer { second.stop() }
            #expect(try second.status().workers.allSatisfy { $0.release == r2 })
            let back = try second.cli(["rollback"])
            #expect(back.code == 0, "\(back.stderr)")
            #expect(back.stdout.contains("rollback finished: 2 workers on \(second.releaseDirectory)"))
            #expect(try second.status().workers.allSatisfy { $0.release == second.releaseDirectory })
            let again = try second.cli(["history", "--json"])
            #expect(again.stdout.contains("\"kind\" : \"rollback\""))
        }

        @Test("baton stopped mid-deploy: the release is not committed, history says interrupted, the next baton serves the old one")
        func stoppedMidDeploy() throws {
            let first = try BatonHarness(workers: 2, tag: "intr")
            let r2 = first.makeRelease("r2")
            let client = try first.startCLI(["deploy", "--release", r2, "--command", Self.worker, "--boot-delay", "0.8"])
            // One slot is on r2, the other not yet.
            #expect(client.waitForStdout(containing: "ready after", timeout: .seconds(15)), "\(client.stdout)")
            #expect(first.stop(keepDirectory: true) == 0)
            #expect(client.wait(timeout: .seconds(10)).map { $0 != 0 } == true, "\(client.stdout)")
            let second = try BatonHarness(workers: 2, tag: "intr", reuse: first.directory)
            defer { second.stop() }
            let status = try second.status()
            #expect(status.release == second.releaseDirectory && status.workers.allSatisfy { $0.release == second.releaseDirectory })
            let history = try second.cli(["history", "--json"]).stdout
            #expect(history.contains("\"outcome\" : \"interrupted\"") && history.contains("baton stopped before it finished"), "\(history)")
            #expect(!history.contains("\"outcome\" : \"succeeded\""), "\(history)")
        }

        @Test("bad deploy input: one line, exit 2, nothing changes")
        func badDeployInput() throws {
            let baton = try BatonHarness(workers: 1, tag: "dbad")
            defer { baton.stop() }
            let pids = try baton.status().workers.map(\.pid)
            let missing = try baton.cli(["deploy", "--release", "/nonexistent/release"])
            #expect(missing.code == 2)
            #expect(missing.stderr == "baton: release /nonexistent/release is not a directory")
            let relative = try baton.cli(["deploy", "--release", "relative/dir"])
            #expect(relative.code == 2)
            let env = try baton.cli(["deploy", "--release", baton.releaseDirectory, "--env", "NOEQUALS"])
            #expect(env.code == 2)
            let surge = try baton.cli(["deploy", "--release", baton.releaseDirectory, "--max-surge", "5"])
            #expect(surge.code == 2)
            #expect(surge.stderr.contains("--max-surge must be between 1 and 1"))
            let noPrevious = try baton.cli(["rollback"])
            #expect(noPrevious.code == 2)
            #expect(noPrevious.stderr.contains("no previous release"))
            #expect(try baton.status().workers.map(\.pid) == pids)
        }

        @Test("a rollback that fails leaves serving slots serving and reports the app degraded")
        func failedRollbackIsDegraded() throws {
            let baton = try BatonHarness(workers: 4, sections: Self.halfSecondWindow, tag: "degr")
            defer { baton.stop() }
            let release = baton.makeRelease("crashy")
            // The old release folder disappears: rolling back to it cannot start workers.
            let moved = baton.directory + "/releases/r1-gone"
            #expect(rename(baton.releaseDirectory, moved) == 0)
            let result = try baton.cli(["deploy", "--release", release, "--command", Self.worker, "--boot-delay", "0.3", "--crash-after", "0.45"])
            #expect(result.code == 1)
            #expect(result.stderr.contains("the rollback failed too"), "\(result.stderr)")
            #expect(result.stderr.contains("  | slot 0:"))
            let status = try baton.status()
            #expect(status.degraded == true)
            #expect(status.summary.contains("DEGRADED"))
        }
    }
}

extension String {
    /// How many times `part` occurs.
    func components(_ part: String) -> Int { split(separator: part, omittingEmptySubsequences: false).count - 1 }
}
