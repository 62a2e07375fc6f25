import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension SecondIntegration {
    /// A deploy is committed only when it is true: its new workers stayed up through the
    /// stability window and the release was persisted. A state directory that cannot be
    /// used is said loudly, never silently replaced.
    @Suite("deploy commit")
    struct DeployCommitTests {
        static let worker = TestPaths.executable("baton-demo-worker")

        /// The persisted release state of `baton`, as text ("" when absent).
        static func savedState(_ baton: BatonHarness) -> String {
            ProcFS.read(baton.directory + "/state/release.json") ?? ""
        }

        @Test("a release whose workers exit 0.3 s after READY: exit 1, rolled back, not persisted, the old workers serve")
        func crashInsideStabilityWindow() throws {
            // The default window (2s), not the tests' shorter one.
            let baton = try BatonHarness(workers: 2, sections: BatonHarness.defaultSections + "\n[deploy]\nstability_window = \"2s\"", tag: "stab")
            defer { baton.stop() }
            let before = try baton.status().workers.map(\.pid)
            let release = baton.makeRelease("crashy")
            let result = try baton.cli(["deploy", "--release", release, "--command", Self.worker, "--crash-after", "0.3"])
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("exited after becoming ready"), "\(result.stderr)")
            #expect(result.stderr.contains("rolled back"), "\(result.stderr)")
            // The worker's last output, whichever slot failed (a CI-door audit: a canary that
            // crashed once it served failed the deploy without it, in its line and in history).
            #expect(result.stderr.contains("— last output: baton-demo-worker["), "\(result.stderr)")
            let history = try baton.cli(["history"])
            #expect(history.stdout.contains("— last output: baton-demo-worker["), "\(history.stdout)")
            // A new worker the rollback abandoned may still be draining when the reply comes.
            let after = try #require(baton.waitForStatus(timeout: .seconds(20)) { $0.workers.count == 2 }, "workers never settled at 2")
            #expect(after.release == baton.releaseDirectory)
            #expect(after.workers.allSatisfy { $0.release == baton.releaseDirectory && $0.state == "ready" }, "\(after.workers)")
            // On a host short of CPU the 0.3 s can outlast the 2 s window (seen under two CPU hogs):
            // the canary then passed, the rollout went on, and the crash rolled back every slot.
            if !result.stdout.contains("stable for") {
                #expect(Set(after.workers.map(\.pid)).intersection(before).count == 1, "the canary alone was replaced and rolled back")
            }
            #expect(!Self.savedState(baton).contains(release), "the release must not be persisted")
            let good = try baton.cli(["deploy", "--release", baton.makeRelease("good")])
            #expect(good.code == 0, "\(good.stderr)")
            #expect(good.stdout.contains("stable for 2s"), "\(good.stdout)")
        }

        @Test("a slot whose worker crashed just before a replace deploy: the deploy's worker takes it, no old one respawns beside it")
        func crashedSlotDuringReplaceDeploy() throws {
            let baton = try BatonHarness(workers: 1, tag: "rspn")
            defer { baton.stop() }
            let pid = try #require(try baton.status().workers.first?.pid)
            #expect(kill(pid, SIGKILL) == 0)
            #expect(baton.process.waitForLine(containing: "slot 0 restarts in 1s", timeout: .seconds(10)) != nil)
            // The respawn comes due while the deploy's new worker boots: at most 1 s after the line
            // above, so before the deploy's worker has booted 1.5 s (the test waits the whole boot).
            let release = baton.makeRelease("r2")
            let result = try baton.cli([
                "deploy", "--release", release, "--strategy", "replace", "--command", Self.worker, "--boot-delay", "1.5",
            ])
            #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
            let status = try baton.status()
            #expect(status.workers.count == 1, "\(status.workers)")
            #expect(status.workers.allSatisfy { $0.release == release && $0.state == "ready" }, "\(status.workers)")
        }

        @Test("a full state directory: the deploy is reported failed (exit 1) before it touches a worker; status stays on the old release")
        func fullStateDirectory() throws {
            let baton = try BatonHarness(workers: 2, tag: "full")
            defer { baton.stop() }
            let state = baton.directory + "/state"
            // A tiny tmpfs over the state directory, filled to the last byte.
            let mounted = try TestProcess.run(["/bin/mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", state], timeout: .seconds(10))
            try #require(mounted.code == 0, "\(mounted.stderr)")
            defer { _ = try? TestProcess.run(["/bin/umount", "-l", state], timeout: .seconds(10)) }
            let fd = open(state + "/fill", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            try #require(fd >= 0)
            let block = [UInt8](repeating: 0x2E, count: 1024)
            while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            close(fd)
            let before = try baton.status().workers.map(\.pid)
            let release = baton.makeRelease("r2")
            let result = try baton.cli(["deploy", "--release", release])
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("cannot record it in the state directory"), "\(result.stderr)")
            #expect(result.stderr.contains("nothing changed"), "\(result.stderr)")
            let after = try baton.status()
            #expect(after.workers.map(\.pid) == before, "no worker was touched")
            #expect(after.release == baton.releaseDirectory)
            #expect(after.workers.allSatisfy { $0.release == baton.releaseDirectory && $0.state == "ready" }, "\(after.workers)")
        }

        @Test("a release state that cannot be written at the commit: exit 1 with the reason, every slot rolled back, not persisted")
        func commitCannotPersist() throws {
            let baton = try BatonHarness(workers: 2, tag: "cmit")
            defer { baton.stop() }
            // The commit's temp file is a directory: the deploy can be recorded, its commit fails
            // (a folder at release.json itself is refused before the deploy touches a worker).
            let state = baton.directory + "/state/release.json.tmp.\(baton.process.pid)"
            #expect(mkdir(state, 0o755) == 0 && mkdir(state + "/x", 0o755) == 0)
            let release = baton.makeRelease("r2")
            let result = try baton.cli(["deploy", "--release", release])
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("cannot persist the release"), "\(result.stderr)")
            #expect(result.stderr.contains("rolled back: slot"), "\(result.stderr)")
            let after = try baton.status()
            #expect(after.release == baton.releaseDirectory)
            #expect(after.workers.allSatisfy { $0.release == baton.releaseDirectory && $0.state == "ready" }, "\(after.workers)")
            let history = try baton.cli(["history", "--json"]).stdout
            #expect(history.contains("\"outcome\" : \"rolled-back\""), "\(history)")
        }

        @Test("a read-only state directory: ERROR in the log and in status (human and --json); a deploy cannot be committed")
        func readOnlyStateDirectory() throws {
            var state = ""
            let baton = try BatonHarness(
                workers: 1, tag: "rost",
                beforeStart: { directory in
                    state = directory + "/state"
                    _ = mkdir(state, 0o750)
                    _ = try? TestProcess.run(["/bin/mount", "--bind", state, state], timeout: .seconds(10))
                    _ = try? TestProcess.run(["/bin/mount", "-o", "remount,bind,ro", state], timeout: .seconds(10))
                })
            defer { baton.stop() }
            defer { _ = try? TestProcess.run(["/bin/umount", "-l", state], timeout: .seconds(10)) }
            let status = try baton.status()
            let problem = try #require(status.problems?.first, "\(status)")
            #expect(problem.contains("not writable") || problem.contains("unusable"), "\(problem)")
            #expect(problem.contains("deploys cannot be committed"))
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains(" ERROR ") && $0.contains("deploys cannot be committed") } != nil)
            let table = try baton.cli(["status"])
            #expect(table.stdout.contains("ERROR: state directory"), "\(table.stdout)")
            let result = try baton.cli(["deploy", "--release", baton.makeRelease("r2")])
            #expect(result.code == 1, "\(result.stderr)")
            #expect(try baton.status().workers.allSatisfy { $0.release == baton.releaseDirectory })
        }

        /// A state audit: with the state directory read-only at start (ext4's
        /// `errors=remount-ro`, `ProtectSystem=strict` without `ReadWritePaths=`), baton started
        /// on `[app] directory`, not the release its release.json names, and said only
        /// `unusable`.
        @Test("a state directory read-only at start: the persisted release runs, and deploys cannot be committed")
        func readOnlyStateDirectoryKeepsThePersistedRelease() throws {
            let first = try BatonHarness(workers: 1, tag: "rost2")
            let directory = first.directory
            defer { TestPaths.remove(directory) }
            let r2 = try first.makeRelease("r2")
            #expect(try first.cli(["deploy", "--release", r2]).code == 0)
            #expect(first.stop(keepDirectory: true) == 0)
            let state = directory + "/state"
            _ = try TestProcess.run(["/bin/mount", "--bind", state, state], timeout: .seconds(10))
            defer { _ = try? TestProcess.run(["/bin/umount", "-l", state], timeout: .seconds(10)) }
            _ = try TestProcess.run(["/bin/mount", "-o", "remount,bind,ro", state], timeout: .seconds(10))
            let baton = try BatonHarness(workers: 1, tag: "rost2", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let status = try baton.status()
            #expect(status.release == r2, "\(status.release)")
            #expect(status.workers.allSatisfy { $0.release == r2 }, "\(status.workers)")
            #expect(
                status.problems?.contains { $0.contains("not writable") && $0.contains("deploys cannot be committed") } == true,
                "\(String(describing: status.problems))")
            #expect(try baton.cli(["deploy", "--release", baton.releaseDirectory]).code == 1)
        }

        /// A limits audit (1 of 1), on a 2 MiB tmpfs filled with `dd`: the start-up check made an
        /// empty file, which a full tmpfs still takes, so baton started with no state problem
        /// shown; and the history lines the full directory refused vanished at a SIGTERM without
        /// a word. Now the check writes a few bytes, and the stop names the lines it loses.
        @Test("a full state directory: ERROR in status from the start; history lines it refused are named as lost when baton stops")
        func fullStateDirectoryAtStartAndAtStop() throws {
            var state = ""
            let baton: BatonHarness
            do {
                baton = try BatonHarness(
                    workers: 1, tag: "full",
                    beforeStart: { directory in
                        state = directory + "/state"
                        _ = mkdir(state, 0o750)
                        _ = try? TestProcess.run(["/bin/mount", "-t", "tmpfs", "-o", "size=64k,mode=0750", "tmpfs", state], timeout: .seconds(10))
                        // dd ends with "No space left on device" once the tmpfs is full.
                        _ = try? TestProcess.run(["/bin/dd", "if=/dev/zero", "of=\(state)/fill", "bs=4096"], timeout: .seconds(10))
                    })
            } catch {
                _ = try? TestProcess.run(["/bin/umount", "-l", state], timeout: .seconds(10))
                throw error
            }
            defer { TestPaths.remove(baton.directory) }
            defer { _ = try? TestProcess.run(["/bin/umount", "-l", state], timeout: .seconds(10)) }
            defer { _ = baton.stop(keepDirectory: true) }
            let problems = try baton.status().problems ?? []
            #expect(problems.contains { $0.contains("state directory") && $0.contains("No space left on device") }, "\(problems)")
            // A reload is not held back by it; its history line is kept in memory.
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            #expect(try baton.status().problems?.contains { $0.hasPrefix("cannot write history (1 line(s) kept") } == true)
            baton.process.signal(SIGTERM)
            #expect(baton.process.wait(timeout: .seconds(30)) == 0)
            #expect(
                baton.process.stderrLines.contains {
                    $0.contains(" ERROR ") && $0.contains("1 history line(s) the state directory refused are lost") && $0.contains("No space left on device")
                }, "\(baton.process.stderrLines.suffix(8))")
        }

        /// A careless-operator case: `rm -rf` of the state directory while baton ran. Every later
        /// write failed, and a restart came up on `[app] directory`, its deploys forgotten.
        @Test("a state directory removed while baton runs is made again with the current release, history and lock; a restart comes up on it")
        func removedStateDirectoryComesBack() throws {
            let first = try BatonHarness(workers: 1, tag: "stgone")
            let r2 = first.makeRelease("r2")
            #expect(try first.cli(["deploy", "--release", r2]).code == 0)
            TestPaths.remove(first.directory + "/state")
            #expect(
                first.process.waitForLine(
                    containing: "/state (or its lock) was removed while baton ran: made it again and wrote back the current release \(r2)",
                    timeout: .seconds(20))
                    != nil, "\(first.process.stderrLines.suffix(5))")
            #expect(Self.savedState(first).contains(r2))
            #expect(ProcFS.read(first.directory + "/state/history.jsonl")?.contains(r2) == true)
            #expect(ProcFS.read(first.directory + "/state/.lock")?.hasPrefix("\(first.process.pid)") == true, "locked again")
            first.stop(keepDirectory: true)
            let second = try BatonHarness(workers: 1, tag: "stgone", reuse: first.directory)
            defer { second.stop() }
            #expect(try second.status().release == r2)
            #expect(try second.cli(["rollback"]).code == 0, "its previous release came back too")
            // release.json alone removed (a re-audit: not noticed, and a restart lost the release).
            unlink(first.directory + "/state/release.json")
            #expect(
                second.process.waitForLine(containing: "release.json was removed while baton ran: wrote back the current release", timeout: .seconds(20)) != nil
            )
            #expect(Self.savedState(second).contains(second.releaseDirectory))
            // Damaged (a state audit: not noticed until a restart came up on [app] directory).
            TestPaths.write(first.directory + "/state/release.json", "{\"current\": {\"dire")
            #expect(
                second.process.waitForLine(containing: "release.json was damaged (", timeout: .seconds(20))?.contains(
                    "kept as \(first.directory)/state/release.json.corrupt) while baton ran: wrote back the current release") == true,
                "\(second.process.stderrLines.suffix(5))")
            #expect(Self.savedState(second).contains(second.releaseDirectory))
            // A folder in its place, removed again: written back then (a re-audit: the first
            // failed write-back was the last, and a restart came up on [app] directory).
            let path = first.directory + "/state/release.json"
            #expect(unlink(path) == 0 && mkdir(path, 0o755) == 0)
            #expect(
                second.process.waitForLine(
                    containing: "\(path) is a folder, not a file: deploys cannot be committed until it is removed (rename \(path): Is a directory",
                    timeout: .seconds(20)) != nil,
                "\(second.process.stderrLines.suffix(5))")
            // A deploy meanwhile is refused before it touches a worker (left from a state audit:
            // it replaced every worker, failed its commit and rolled them all back).
            let workers = try second.status().workers.map(\.pid)
            let refused = try second.cli(["deploy", "--release", second.makeRelease("r3")])
            #expect(refused.code == 1)
            #expect(
                refused.stderr.contains("deploy failed, nothing changed: \(path) is a folder, not a file: deploys cannot be committed until it is removed"),
                "\(refused.stderr)")
            #expect(try second.status().workers.map(\.pid) == workers)
            // Its dry run fails as it would (a re-audit: `dry run: nothing changed`, exit 0).
            let dry = try second.cli(["deploy", "--release", second.makeRelease("r3"), "--dry-run"])
            #expect(dry.code == 1 && dry.stderr.contains("the deploy would be refused: \(path) is a folder, not a file"), "\(dry.stderr)")
            #expect(rmdir(path) == 0)
            #expect(
                second.process.waitForLine(containing: "release state persisted: the state directory's earlier problems are resolved", timeout: .seconds(20))
                    != nil,
                "\(second.process.stderrLines.suffix(5))")
            #expect(Self.savedState(second).contains(second.releaseDirectory))
            #expect(try second.status().problems == nil)
        }

        @Test("a truncated release.json: ERROR, status says state unreadable, kept as .corrupt, not replaced until a deploy succeeds")
        func truncatedReleaseState() throws {
            let first = try BatonHarness(workers: 1, tag: "trnc")
            let r2 = first.makeRelease("r2")
            #expect(try first.cli(["deploy", "--release", r2]).code == 0)
            first.stop(keepDirectory: true)
            let path = first.directory + "/state/release.json"
            let truncated = String(Self.savedState(first).prefix(30))
            TestPaths.write(path, truncated)
            let second = try BatonHarness(workers: 1, tag: "trnc", reuse: first.directory)
            defer { second.stop() }
            let status = try second.status()
            #expect(status.release == second.releaseDirectory)
            #expect(status.problems?.contains { $0.hasPrefix("state unreadable:") } == true, "\(status)")
            #expect(second.process.waitForLine(timeout: .seconds(10)) { $0.contains(" ERROR ") && $0.contains("state unreadable") } != nil)
            #expect(ProcFS.read(path + ".corrupt") == truncated)
            #expect(ProcFS.read(path) == truncated, "never silently replaced")
            let rollback = try second.cli(["rollback"])
            #expect(rollback.code == 2)
            #expect(rollback.stderr.contains("no previous release") && rollback.stderr.contains("state unreadable"), "\(rollback.stderr)")
            let r3 = second.makeRelease("r3")
            #expect(try second.cli(["deploy", "--release", r3]).code == 0)
            #expect(Self.savedState(second).contains(r3))
            #expect(try second.status().problems == nil)
        }

        @Test("the persisted release folder is gone: baton starts on [app] directory, says so, and a deploy works")
        func missingPersistedRelease() throws {
            let first = try BatonHarness(workers: 2, tag: "miss")
            let r2 = first.makeRelease("r2")
            #expect(try first.cli(["deploy", "--release", r2]).code == 0)
            first.stop(keepDirectory: true)
            #expect(rename(r2, first.directory + "/releases/r2-gone") == 0)
            let second = try BatonHarness(workers: 2, tag: "miss", reuse: first.directory)
            defer { second.stop() }
            let status = try second.status()
            #expect(status.release == second.releaseDirectory)
            #expect(status.workers.allSatisfy { $0.release == second.releaseDirectory && $0.state == "ready" })
            #expect(status.problems?.contains { $0.contains("persisted release \(r2) is missing") } == true, "\(status)")
            #expect(status.summary.contains("STATE ERROR (see baton status)"), "\(status.summary)")
            #expect(second.process.waitForLine(timeout: .seconds(10)) { $0.contains(" ERROR ") && $0.contains("is missing") } != nil)
            let r3 = second.makeRelease("r3")
            let deployed = try second.cli(["deploy", "--release", r3])
            #expect(deployed.code == 0, "\(deployed.stderr)")
            let fixed = try second.status()
            #expect(fixed.problems == nil && !fixed.summary.contains("STATE ERROR"), "\(fixed.summary)")
        }
    }
}
