import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// `baton upgrade` execs only a binary that proves it is baton (the versioned handshake),
    /// that only root can have written, and only for root or baton's own uid.
    @Suite("baton upgrade: refusals")
    struct UpgradeSafetyTests {
        @Test("binaries that are not baton, or could be swapped, are refused; the daemon keeps running untouched")
        func badBinariesRefused() throws {
            let baton = try BatonHarness(workers: 2, tag: "upgbad")
            defer { baton.stop() }
            let before = try baton.status()
            let scripts = baton.directory + "/bin"
            _ = mkdir(scripts, 0o755)
            // The arguments the daemon gives the check child: find the handshake fd and the nonce.
            let parse = """
                fd=""; nonce=""
                while [ $# -gt 0 ]; do case "$1" in --handshake-fd) fd=$2; shift;; --nonce) nonce=$2; shift;; esac; shift; done
                """
            let cases: [(name: String, script: String?, mode: mode_t, reason: String)] = [
                // Exits 0 without a word (the measured defect: the daemon used to exec it).
                ("true", nil, 0o755, "no handshake"),
                // The old check's answer, then crashes when exec'd for real.
                ("oldcheck", "case \"$2\" in --check) echo 'upgrade check: ok'; exit 0;; esac\nexit 1", 0o755, "no handshake"),
                ("version2", parse + "\neval \"echo 'baton-upgrade-protocol 2 ready $nonce' >&$fd\"\nexit 0", 0o755, "protocol 2"),
                ("badnonce", parse + "\neval \"echo 'baton-upgrade-protocol 1 ready 0123456789abcdef' >&$fd\"\nexit 0", 0o755, "nonce"),
                // Answers the handshake, but a script cannot be exec'd by its close-on-exec descriptor: the
                // execveat failed with "No such file or directory" after "re-executing" (an audit).
                ("script", parse + "\neval \"echo 'baton-upgrade-protocol 1 ready $nonce' >&$fd\"\nexit 0", 0o755, "is a script (#!/bin/sh)"),
                ("groupwritable", nil, 0o775, "writable by group or others"),
            ]
            for c in cases {
                let path = scripts + "/" + c.name
                if let script = c.script {
                    TestPaths.write(path, "#!/bin/sh\n" + script + "\n", mode: c.mode)
                } else {
                    #expect(try TestProcess.run(["/bin/cp", "/bin/true", path]).code == 0)
                    chmod(path, c.mode)
                }
                let refused = try baton.cli(["upgrade", "--binary", path])
                // Exit 2: refused before it ran (file checks); 1: it ran and did not answer the handshake.
                #expect(refused.code == (c.mode == 0o755 ? 1 : 2), "\(c.name): \(refused.stdout)")
                #expect(refused.stderr.contains("upgrade refused") && refused.stderr.contains(c.reason), "\(c.name): \(refused.stderr)")
                #expect(refused.stderr.split(separator: "\n").count == 1, "\(c.name): \(refused.stderr)")
                #expect(baton.process.exitCode == nil, "\(c.name): the daemon is gone")
                #expect(try baton.status().workers.map(\.pid) == before.workers.map(\.pid), "\(c.name)")
            }

            // Owned by someone else than root: refused before it runs.
            let foreign = scripts + "/foreign"
            #expect(try TestProcess.run(["/bin/cp", "/bin/true", foreign]).code == 0)
            #expect(chown(foreign, 65534, 65534) == 0)
            let notRoot = try baton.cli(["upgrade", "--binary", foreign])
            #expect(notRoot.code == 2)
            #expect(notRoot.stderr.contains("owned by uid 65534"), "\(notRoot.stderr)")

            // In a directory others may write to (the file could be renamed over).
            let open = baton.directory + "/open"
            _ = mkdir(open, 0o755)
            chmod(open, 0o777)
            #expect(try TestProcess.run(["/bin/cp", "/bin/true", open + "/true"]).code == 0)
            let openDirectory = try baton.cli(["upgrade", "--binary", open + "/true"])
            #expect(openDirectory.code == 2)
            #expect(openDirectory.stderr.contains("writable by others"), "\(openDirectory.stderr)")

            #expect(baton.process.exitCode == nil)
            let after = try baton.status()
            #expect(after.pid == before.pid)
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
            #expect(after.state == "running")
        }

        @Test("a check that cannot read the state says why: the refusal names the unreadable release.json; the daemon keeps serving")
        func checkRefusalCarriesItsReason() throws {
            let baton = try BatonHarness(workers: 1, tag: "upgstate")
            defer { baton.stop() }
            let before = try baton.status()
            let state = baton.directory + "/state/release.json"
            TestPaths.write(state, "{ not json")
            let refused = try baton.cli(["upgrade"], timeout: .seconds(90))
            #expect(refused.code == 1)
            #expect(
                refused.stderr.contains("upgrade refused") && refused.stderr.contains("\(state): not a release state this baton can read"), "\(refused.stderr)")
            #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
            #expect(baton.process.exitCode == nil)
            #expect(try baton.status().workers.map(\.pid) == before.workers.map(\.pid))
            #expect(HTTP.get(port: baton.port, path: "/")?.status == 200)
        }

        /// Found by an operator audit: the new image took the edited config as running, with
        /// `workers` changed ("3 workers kept" under a config of 2) or `[metrics]` moved.
        @Test("a config edited in what only a restart applies refuses the upgrade in one line; the daemon keeps serving")
        func aConfigOnlyARestartAppliesRefusesTheUpgrade() throws {
            let baton = try BatonHarness(workers: 1, tag: "upgcfg")
            defer { baton.stop() }
            let before = try baton.status()
            let original = try #require(ProcFS.read(baton.configPath))
            for (edit, reason) in [
                (original.replacingOccurrences("workers = 1", with: "workers = 2"), "app.workers changed from 1 to 2"),
                (original + "\n[metrics]\naddress = \"127.0.0.1:0\"\n", "[metrics] changed in the config"),
            ] {
                TestPaths.write(baton.configPath, edit)
                let refused = try baton.cli(["upgrade"], timeout: .seconds(90))
                #expect(refused.code == 1, "\(refused.stderr)")
                #expect(refused.stderr.contains("upgrade refused") && refused.stderr.contains(reason), "\(refused.stderr)")
                #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
                #expect(try baton.status().pid == before.pid && baton.process.exitCode == nil)
            }
            TestPaths.write(baton.configPath, original)
            let upgraded = try baton.cli(["upgrade"], timeout: .seconds(90))
            #expect(upgraded.code == 0, "\(upgraded.stderr)")
            #expect(try baton.status().workers.map(\.pid) == before.workers.map(\.pid))
        }

        @Test("a check that never answers is killed after --timeout (30 s by default); the upgrade is refused and the daemon keeps serving")
        func silentCheckTimesOut() throws {
            let baton = try BatonHarness(workers: 1, tag: "upgslow")
            defer { baton.stop() }
            let before = try baton.status()
            let path = baton.directory + "/silent"
            TestPaths.write(path, "#!/bin/sh\nexec sleep 300\n", mode: 0o755)
            let refused = try baton.cli(["upgrade", "--binary", path, "--timeout", "2s"], timeout: .seconds(90))
            #expect(refused.code == 1)
            #expect(refused.stderr.contains("upgrade refused") && refused.stderr.contains("no answer within 2s"), "\(refused.stderr)")
            #expect(baton.process.exitCode == nil)
            #expect(try baton.status().workers.map(\.pid) == before.workers.map(\.pid))
            #expect(HTTP.get(port: baton.port, path: "/")?.status == 200)
        }

        @Test("a member of the control group may deploy a release but not upgrade, nor deploy a --command without [app] user")
        func groupMemberLimits() throws {
            // gid 50 as the control group; uid 65534 in it as a supplementary group.
            let baton = try BatonHarness(workers: 1, tag: "upgperm", controlGroup: "50")
            defer { baton.stop() }
            chmod(baton.directory, 0o755)
            let before = try baton.status()
            let member = Credentials(uid: 65534, gid: 65534, groups: [65534, 50])
            let exe = TestPaths.executable("baton")

            let upgrade = try runAs(member, [exe, "upgrade", "--socket", baton.controlSocket, "--binary", "/bin/true"])
            #expect(upgrade.code == 1)
            #expect(upgrade.stderr.contains("permission denied") && upgrade.stderr.contains("upgrade"), "\(upgrade.stderr)")
            #expect(baton.process.exitCode == nil)

            let command = try runAs(
                member, [exe, "deploy", "--socket", baton.controlSocket, "--release", baton.releaseDirectory, "--command", "/bin/sh", "-c", "id"])
            #expect(command.code == 1)
            #expect(command.stderr.contains("permission denied") && command.stderr.contains("--command"), "\(command.stderr)")

            let env = try runAs(member, [exe, "deploy", "--socket", baton.controlSocket, "--release", baton.releaseDirectory, "--env", "LD_PRELOAD=/tmp/x.so"])
            #expect(env.code == 1)
            #expect(env.stderr.contains("permission denied") && env.stderr.contains("--env"), "\(env.stderr)")
            #expect(try baton.status().workers.map(\.pid) == before.workers.map(\.pid))

            // A release folder is what the group is for.
            let release = baton.makeRelease("r2")
            let deploy = try runAs(member, [exe, "deploy", "--socket", baton.controlSocket, "--release", release])
            #expect(deploy.code == 0, "\(deploy.stderr)")
            #expect(try baton.status().workers.first?.release == release)
        }

        private func runAs(_ credentials: Credentials, _ argv: [String]) throws -> CommandResult {
            let p = try TestProcess(argv, environment: TestPaths.cleanEnvironment(), credentials: credentials)
            let code = p.wait(timeout: .seconds(60)) ?? p.stop(timeout: .seconds(1))
            return CommandResult(code: code, stdout: p.stdout, stderr: p.stderrLines.joined(separator: "\n"))
        }
    }
}
