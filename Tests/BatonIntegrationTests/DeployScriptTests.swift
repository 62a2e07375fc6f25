import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

/// The repository's deploy/ folder.
let deployFolder = TestPaths.packageRoot + "/deploy"

/// Writes an executable `run` into `folder` that execs the demo worker with
/// `flags`: the release's own content decides how it behaves (config command
/// `["./run"]` resolves in the release folder). `worker` is the demo worker to run.
func writeRunScript(_ folder: String, flags: [String] = [], worker: String = TestPaths.executable("baton-demo-worker")) {
    _ = mkdir(folder, 0o755)
    let args = ([worker] + flags).map { "'\($0)'" }.joined(separator: " ")
    TestPaths.write(folder + "/run", "#!/bin/sh\nexec \(args) \"$@\"\n", mode: 0o755)
}

/// A baton whose workers run `./run` of their release folder; `RELEASES` in
/// `extra` stands for its releases folder.
func scriptedBaton(workers: Int, tag: String, extra: String = "") throws -> BatonHarness {
    let directory = TestPaths.temporaryDirectory(tag)
    return try BatonHarness(
        workers: workers, command: ["./run"],
        sections: BatonHarness.defaultSections + "\n" + extra.replacing("RELEASES", with: directory + "/releases"), tag: tag,
        beforeStart: { dir in writeRunScript(dir + "/releases/r1") }, reuse: directory)
}

extension ThirdIntegration {
    /// deploy/baton-deploy end to end with its local transport: a real daemon,
    /// real workers, real rsync, bounded load.
    @Suite("deploy/baton-deploy")
    struct DeployScriptTests {
        static let script = deployFolder + "/baton-deploy"

        /// Runs baton-deploy (local transport) against `baton`.
        static func deploy(_ baton: BatonHarness, _ args: [String]) throws -> CommandResult {
            try TestProcess.run(local(baton) + args, timeout: .seconds(120))
        }

        /// baton-deploy on this machine against `baton` (its socket, its releases folder).
        static func local(_ baton: BatonHarness) -> [String] {
            [
                script, "--transport", "local", "--baton", TestPaths.executable("baton"), "--socket", baton.controlSocket,
                "--releases-dir", baton.directory + "/releases",
            ]
        }

        /// A source folder (what CI built) holding a `run` with `flags`.
        static func source(_ baton: BatonHarness, _ name: String, flags: [String] = []) -> String {
            let path = baton.directory + "/src-" + name
            writeRunScript(path, flags: flags)
            return path
        }

        @Test("a good release: preflight, rsync, deploy; 0 failed requests under load, every worker on it, exit 0")
        func goodRelease() throws {
            let baton = try scriptedBaton(workers: 3, tag: "bd-ok")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(120))
            #expect(load.waitForProgress(200))
            let result = try Self.deploy(baton, ["--release-id", "v2", "--need", "64MiB", "--roll-ahead", Self.source(baton, "v2")])
            #expect(load.waitForProgress(200))
            let report = load.stop()
            print("baton-deploy under load: \(report)")
            let release = baton.directory + "/releases/v2"
            #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
            // What runs, as it runs (a headline audit: --roll-ahead was passed, not shown).
            #expect(result.stdout.contains("==> localhost: preflight (baton preflight --need 64MiB --roll-ahead)"), "\(result.stdout)")
            #expect(result.stdout.contains("fits: need"), "baton's figures are streamed")
            #expect(result.stdout.contains("deploy finished: 3 workers on \(release)"))
            #expect(result.stdout.contains("baton-deploy: v2 deployed on: localhost"))
            #expect(access(release + "/run", X_OK) == 0, "rsync shipped the folder")
            #expect(report.failed == 0, "\(report)")
            #expect(report.releases.last == release)
            let status = try baton.status()
            #expect(status.release == release)
            #expect(status.workers.allSatisfy { $0.release == release && $0.state == "ready" })
            // A re-run (same id) never copies over the running release: that host is skipped.
            let rerun = try Self.deploy(baton, ["--release-id", "v2", Self.source(baton, "v2-changed", flags: ["--fail-boot"])])
            #expect(rerun.code == 0, "\(rerun.stderr)")
            #expect(rerun.stdout.contains("==> localhost: already on \(release): skipped"))
            #expect(!(ProcFS.read(release + "/run") ?? "").contains("--fail-boot"))
            #expect(try baton.status().workers.map(\.pid) == status.workers.map(\.pid))
        }

        @Test("a re-run after a cancel never copies over the release a deploy in flight runs: it follows that deploy; another id is refused, nothing copied")
        func rerunWhileTheDeployIsInFlight() throws {
            // The window holds the deploy in flight through two more runs of the script (5 s did
            // not, once, at a load average of 25: the re-run found it finished and skipped); the
            // deploys after it take that long too, so the runs below have 20 s, not 10.
            let baton = try scriptedBaton(workers: 1, tag: "bd-rerun", extra: "[deploy]\nstability_window = \"8s\"")
            defer { baton.stop() }
            let release = baton.directory + "/releases/abc"
            let build = Self.source(baton, "build")
            TestPaths.write(build + "/VERSION", "v1\n")
            let argv = Self.local(baton)
            // The first run: its deploy stays in flight (the stability window), then the CI job is
            // cancelled: its process group (the script, baton's CLI) gets SIGTERM.
            let first = try TestProcess(argv + ["--release-id", "abc", build])
            let inFlight = baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.release == release }
            #expect(inFlight != nil, "the first run's deploy started")
            kill(-first.pid, SIGTERM)
            #expect(first.wait(timeout: .seconds(10)) != nil)
            #expect(try baton.status().operation?.release == release, "killing the CLI does not stop the deploy")
            // CI rebuilt (a different build under the same id) and runs the same command again.
            TestPaths.write(build + "/VERSION", "v2, rebuilt\n")
            TestPaths.write(build + "/extra", "new\n")
            // Another release while it runs: refused before anything is copied.
            let other = try TestProcess.run(argv + ["--release-id", "def", build], timeout: .seconds(20))
            #expect(other.code == 1, "\(other.stdout)\n\(other.stderr)")
            #expect(other.stderr.contains("baton-deploy: localhost: a deploy of \(release) is in progress: nothing was copied"), "\(other.stderr)")
            #expect(access(baton.directory + "/releases/def", F_OK) != 0, "nothing copied")
            // The re-run follows the deploy in flight: nothing copied over the folder it runs in.
            let rerun = try TestProcess.run(argv + ["--release-id", "abc", build], timeout: .seconds(20))
            #expect(rerun.code == 0, "\(rerun.stdout)\n\(rerun.stderr)")
            #expect(rerun.stdout.contains("==> localhost: a deploy of \(release) is in progress (an earlier run's): following it"), "\(rerun.stdout)")
            #expect(!rerun.stdout.contains("==> localhost: ship"), "\(rerun.stdout)")
            #expect(rerun.stdout.contains("baton-deploy: abc deployed on: localhost"), "\(rerun.stdout)")
            #expect(ProcFS.read(release + "/VERSION") == "v1\n", "the folder the deploy runs from is untouched")
            #expect(access(release + "/extra", F_OK) != 0, "nothing copied")
            let after = try baton.status()
            #expect(after.operation == nil && after.release == release)
            #expect(after.workers.allSatisfy { $0.release == release && $0.state == "ready" })
            // A folder a cancelled copy left half done (not served, not in flight) is copied over, then deployed.
            let half = baton.directory + "/releases/half"
            _ = mkdir(half, 0o755)
            TestPaths.write(half + "/partial", "x")
            let fresh = try TestProcess.run(argv + ["--release-id", "half", build], timeout: .seconds(20))
            #expect(fresh.code == 0, "\(fresh.stdout)\n\(fresh.stderr)")
            #expect(access(half + "/partial", F_OK) != 0 && ProcFS.read(half + "/VERSION") == "v2, rebuilt\n", "rsync --delete made it the build")
            #expect(try baton.status().release == half)

            // A CI audit of baton-deploy, three ways a re-run of a release the host serves said
            // "already on DEST: skipped" (exit 0) where it must not. (1) The releases folder
            // spelled with a double slash named another folder to the old check: it rsynced
            // over the one the workers run in. Skipped now, nothing copied.
            TestPaths.write(build + "/VERSION", "v3\n")
            let doubled = [
                Self.script, "--transport", "local", "--baton", TestPaths.executable("baton"), "--socket", baton.controlSocket,
                "--releases-dir", baton.directory + "//releases",
            ]
            let spelled = try TestProcess.run(doubled + ["--release-id", "half", build], timeout: .seconds(20))
            #expect(spelled.code == 0 && spelled.stdout.contains("==> localhost: already on"), "\(spelled.stdout)\n\(spelled.stderr)")
            #expect(ProcFS.read(half + "/VERSION") == "v2, rebuilt\n", "nothing copied over the folder the workers run in")
            // (2) A deploy of another release in flight moves the host off DEST: refused, not skipped.
            let moving = try baton.startCLI(["deploy", "--release", release])
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.release == release } != nil)
            let during = try TestProcess.run(argv + ["--release-id", "half", build], timeout: .seconds(20))
            #expect(during.code == 1, "\(during.stdout)\n\(during.stderr)")
            #expect(during.stderr.contains("a deploy of \(release) is in progress: nothing was copied"), "\(during.stderr)")
            // A re-run of that release spelling the releases folder with a double slash follows
            // it as the same release, and the check after it compares paths the same way (the
            // review of this change: it compared strings, and failed a deploy that succeeded).
            let follows = try TestProcess.run(doubled + ["--release-id", "abc", build], timeout: .seconds(20))
            #expect(follows.code == 0, "\(follows.stdout)\n\(follows.stderr)")
            #expect(follows.stdout.contains("is in progress (an earlier run's): following it"), "\(follows.stdout)")
            #expect(!follows.stdout.contains("==> localhost: ship"), "\(follows.stdout)")
            #expect(moving.wait(timeout: .seconds(20)) == 0)
            // (3) A DEGRADED host (a rollback failed: the folder of the release it names is gone)
            // still names DEST as its release: refused, not skipped.
            let crash = baton.directory + "/releases/crash"
            _ = mkdir(crash, 0o755)
            let failing = try baton.startCLI(["deploy", "--release", crash, "--command", TestPaths.executable("baton-demo-worker"), "--crash-after", "1"])
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.release == crash } != nil)
            TestPaths.remove(release)
            #expect(failing.wait(timeout: .seconds(20)) == 1, "\(failing.stdout)")
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.degraded == true && $0.release == release } != nil)
            let broken = try TestProcess.run(argv + ["--release-id", "abc", build], timeout: .seconds(20))
            #expect(broken.code == 1, "\(broken.stdout)\n\(broken.stderr)")
            #expect(broken.stderr.contains("baton-deploy: localhost: DEGRADED"), "\(broken.stderr)")
            #expect(!broken.stdout.contains("already on"), "\(broken.stdout)")
        }

        @Test("a release that does not fit in memory: preflight says no with the figures, nothing is copied or changed, exit 1")
        func preflightStops() throws {
            let baton = try scriptedBaton(workers: 2, tag: "bd-pre", extra: "[memory]\nbudget = \"100MiB\"\nreserve = \"0B\"")
            defer { baton.stop() }
            let before = try baton.status()
            let result = try Self.deploy(baton, ["--release-id", "big", "--need", "200MiB", Self.source(baton, "big")])
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("  | budget: 100.0 MiB (configured)"), "baton's figures: \(result.stderr)")
            #expect(result.stderr.contains("does not fit: need"), "\(result.stderr)")
            #expect(result.stderr.contains("preflight failed (exit 1): nothing was copied or changed"))
            #expect(!result.stdout.contains("==> localhost: ship"))
            #expect(access(baton.directory + "/releases/big", F_OK) != 0, "nothing was copied")
            let after = try baton.status()
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
            #expect(after.release == baton.releaseDirectory)
        }

        @Test("a release that fails readiness: baton rolls back, the worker's output is printed, 0 failed requests, exit 1")
        func readinessFailure() throws {
            let baton = try scriptedBaton(workers: 3, tag: "bd-bad")
            defer { baton.stop() }
            let before = try baton.status()
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(60))
            #expect(load.waitForProgress(100))
            let result = try Self.deploy(baton, ["--release-id", "bad", Self.source(baton, "bad", flags: ["--fail-boot"])])
            #expect(load.waitForProgress(100))
            let report = load.stop()
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("  | baton-demo-worker["), "the worker's output is printed")
            #expect(result.stderr.contains("boot failed: simulated"))
            #expect(result.stderr.contains("nothing changed"))
            #expect(result.stderr.contains("baton-deploy: stopped. deployed: none; failed: localhost"))
            #expect(report.failed == 0, "\(report)")
            let after = try baton.status()
            #expect(after.release == baton.releaseDirectory)
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
        }

        @Test("the ssh transport, through a stand-in for ssh that runs the remote command here: quoting, rsync -e, exit codes")
        func sshTransport() throws {
            let baton = try scriptedBaton(workers: 2, tag: "bd-ssh")
            defer { baton.stop() }
            // What sshd does with `ssh HOST WORDS...`: join the words, run them with a shell.
            let log = baton.directory + "/ssh.log"
            let fake = baton.directory + "/fake-ssh"
            TestPaths.write(fake, "#!/bin/sh\nprintf '%s: %s\\n' \"$1\" \"$2\" >> '\(log)'\nshift\nexec sh -c \"$*\"\n", mode: 0o755)
            let common = [
                Self.script, "--ssh", fake, "--hosts", "web1", "--baton", TestPaths.executable("baton"), "--socket", baton.controlSocket,
                "--releases-dir", baton.directory + "/releases",
            ]
            let good = try TestProcess.run(common + ["--release-id", "s2", Self.source(baton, "s2")], timeout: .seconds(120))
            #expect(good.code == 0, "\(good.stdout)\n\(good.stderr)")
            #expect(try baton.status().release == baton.directory + "/releases/s2")
            let calls = (ProcFS.read(log) ?? "").split(separator: "\n").map(String.init)
            #expect(calls.count == 5, "preflight, status, mkdir, rsync, deploy: \(calls)")
            #expect(calls.allSatisfy { $0.hasPrefix("web1: ") })
            #expect(calls.first?.contains("preflight") == true && calls.last?.contains("deploy") == true, "\(calls)")
            #expect(calls.contains { $0.contains("rsync") }, "rsync ran over the ssh command")
            let bad = try TestProcess.run(common + ["--release-id", "s3", Self.source(baton, "s3", flags: ["--fail-boot"])], timeout: .seconds(120))
            #expect(bad.code == 1)
            #expect(bad.stderr.contains("boot failed: simulated"))
            let unreachable = try TestProcess.run(
                [
                    Self.script, "--ssh", fake, "--hosts", "web1", "--baton", TestPaths.executable("baton"), "--socket", "/nonexistent/c.sock",
                    "--releases-dir", baton.directory + "/releases", "--preflight-only",
                ])
            #expect(unreachable.code == 3, "baton's own code: \(unreachable.stderr)")
            // A host named twice is checked (and deployed to) once.
            let before = (ProcFS.read(log) ?? "").split(separator: "\n").count
            let twice = try TestProcess.run(
                [
                    Self.script, "--ssh", fake, "--hosts", "web1,web1", "--host", "web1", "--baton", TestPaths.executable("baton"), "--socket",
                    baton.controlSocket, "--releases-dir", baton.directory + "/releases", "--preflight-only",
                ])
            #expect(twice.code == 0, "\(twice.stdout)\n\(twice.stderr)")
            #expect((ProcFS.read(log) ?? "").split(separator: "\n").count == before + 1, "one preflight")
            #expect(twice.stdout.contains("preflight passed on: web1\n"), "\(twice.stdout)")

            // A fleet audit: the host lost while rsync copied (rsync exits 255 or 12, as it sees
            // ssh's end) exited 1, "copying failed"; README gives 3 for a host ssh cannot reach.
            let drops = baton.directory + "/ssh-drops-rsync"
            let gone = baton.directory + "/host-gone"
            TestPaths.write(
                drops, "#!/bin/sh\ncase \"$*\" in *rsync*) touch '\(gone)'; exit 255 ;; esac\n[ -e '\(gone)' ] && exit 255\nshift\nexec sh -c \"$*\"\n",
                mode: 0o755)
            var dropped = common
            dropped[2] = drops
            let copy = try TestProcess.run(dropped + ["--release-id", "s4", Self.source(baton, "s4")], timeout: .seconds(120))
            #expect(copy.code == 3, "\(copy.stdout)\n\(copy.stderr)")
            #expect(copy.stderr.contains("baton-deploy: web1: unreachable over ssh while copying the release (ssh exit 255)"), "\(copy.stderr)")
            #expect(try baton.status().release == baton.directory + "/releases/s2")
            // An IPv6 address: ssh takes it bare, rsync only in brackets (`root@::1:DIR` names
            // the host `root@`; an audit saw rsync fail after the preflight passed).
            let six = baton.directory + "/ssh-v6"
            TestPaths.write(
                six, "#!/bin/sh\n[ \"$1\" = -l ] && shift 2\nprintf '%s: %s\\n' \"$1\" \"$2\" >> '\(log)'\nshift\nexec sh -c \"$*\"\n", mode: 0o755)
            var v6 = common
            v6[2] = six
            v6[4] = "root@::1"
            let literal = try TestProcess.run(v6 + ["--release-id", "s5", Self.source(baton, "s5")], timeout: .seconds(120))
            #expect(literal.code == 0, "\(literal.stdout)\n\(literal.stderr)")
            #expect((ProcFS.read(log) ?? "").contains("::1: rsync"), "rsync reached ::1 over the ssh command")
            #expect(try baton.status().release == baton.directory + "/releases/s5")
        }

        /// A fleet audit: a re-run while the deploy of its release ran with a rollback or another
        /// deploy queued behind it followed the deploy, said deployed and exited 0; the queued
        /// one then moved the host off the release. One waiting stops the run (deploy/README).
        @Test("a re-run while its release's deploy runs with another deploy queued behind it stops, exit 1, nothing copied")
        func rerunWithADeployQueuedBehindTheDeploy() throws {
            let baton = try scriptedBaton(workers: 1, tag: "bd-queue", extra: "[deploy]\nstability_window = \"5s\"")
            defer { baton.stop() }
            let release = baton.directory + "/releases/abc"
            let build = Self.source(baton, "build")
            let argv = Self.local(baton)
            let first = try TestProcess(argv + ["--release-id", "abc", build])
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.release == release } != nil, "the first run's deploy started")
            let queued = try baton.startCLI(["deploy", "--release", baton.releaseDirectory, "--wait"])
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.queued == 1 } != nil, "the second deploy waits behind it")
            let rerun = try TestProcess.run(argv + ["--release-id", "abc", build], timeout: .seconds(10))
            #expect(rerun.code == 1, "\(rerun.stdout)\n\(rerun.stderr)")
            #expect(rerun.stderr.contains("a deploy of \(release) is in progress, with 1 deploy(s) or rollback(s) queued behind it"), "\(rerun.stderr)")
            #expect(!rerun.stdout.contains("following it") && !rerun.stdout.contains("deployed on"), "\(rerun.stdout)")
            #expect(first.wait(timeout: .seconds(30)) == 0)
            #expect(queued.wait(timeout: .seconds(30)) == 0, "\(queued.stdout)\n\(queued.stderrLines)")
            #expect(try baton.status().release == baton.releaseDirectory)
        }

        /// A fleet audit: `--timeout 5s` did not bound a re-run that followed an earlier run's
        /// deploy (`baton deploy --attach` takes no timeout): it exited 0 after 62 s.
        @Test("--timeout bounds following an earlier run's deploy: exit 4 once it is over, the followed deploy goes on")
        func timeoutBoundsFollowing() throws {
            let baton = try scriptedBaton(workers: 1, tag: "bd-attach-to")
            defer { baton.stop() }
            let release = baton.directory + "/releases/slow"
            writeRunScript(release, flags: ["--boot-delay", "10"])
            let earlier = try baton.startCLI(["deploy", "--release", release])
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.release == release } != nil, "the earlier run's deploy runs")
            let began = monotonicNow()
            let rerun = try TestProcess.run(
                Self.local(baton) + ["--release-id", "slow", "--timeout", "2s", Self.source(baton, "slow-build")], timeout: .seconds(60))
            let took = monotonicNow() - began
            #expect(rerun.code == 4, "\(rerun.stdout)\n\(rerun.stderr)")
            #expect(took < .seconds(7), "bounded by --timeout 2s: \(took)")
            #expect(rerun.stdout.contains("following it"), "\(rerun.stdout)")
            let line = "baton-deploy: localhost: stopped following the deploy of \(release) after 2s (--timeout): it goes on on localhost"
            #expect(rerun.stderr.contains(line), "\(rerun.stderr)")
            #expect(try baton.status().operation?.release == release, "the followed deploy goes on")
            #expect(earlier.wait(timeout: .seconds(40)) == 0, "\(earlier.stdout)\n\(earlier.stderrLines)")
            #expect(try baton.status().release == release)
        }

        /// A fleet audit: two pipelines at once; baton refused the second's deploy (`deploy in
        /// progress (of …): refused`) and baton-deploy's last line was a bare `deploy failed (exit 1)`.
        @Test("baton refuses the deploy (another started between the check and the deploy): baton's line is the script's, nothing changed, exit 1")
        func refusalIsNamed() throws {
            let baton = try scriptedBaton(workers: 1, tag: "bd-race")
            defer { baton.stop() }
            let other = baton.directory + "/releases/other"
            writeRunScript(other, flags: ["--boot-delay", "4"])
            // Another pipeline's deploy starts after this run's check (status), before its deploy.
            let racing = baton.directory + "/baton-racing"
            let real = TestPaths.executable("baton")
            TestPaths.write(
                racing,
                """
                #!/bin/sh
                if [ "$1" = deploy ]; then
                    '\(real)' deploy --socket '\(baton.controlSocket)' --release '\(other)' >/dev/null 2>&1 &
                    for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
                        '\(real)' status --socket '\(baton.controlSocket)' --json | grep -q '"kind" : "deploy"' && break
                        sleep 0.25
                    done
                fi
                exec '\(real)' "$@"

                """, mode: 0o755)
            let argv = [
                Self.script, "--transport", "local", "--baton", racing, "--socket", baton.controlSocket, "--releases-dir", baton.directory + "/releases",
            ]
            let run = try TestProcess.run(argv + ["--release-id", "mine", Self.source(baton, "mine")], timeout: .seconds(60))
            #expect(run.code == 1, "\(run.stdout)\n\(run.stderr)")
            let line = "baton-deploy: localhost: baton refused the deploy: deploy in progress (of \(other)): refused"
            #expect(run.stderr.contains(line), "\(run.stderr)")
            #expect(run.stderr.contains("nothing was changed on localhost"), "\(run.stderr)")
            #expect(!run.stderr.contains("deploy failed (exit 1)\n"), "\(run.stderr)")
            #expect(baton.waitForStatus(timeout: .seconds(30)) { $0.operation == nil } != nil)
            #expect(try baton.status().release == other)
        }

        @Test("bad arguments: one line on stderr, exit 2, the service untouched; --dry-run changes nothing")
        func usageAndDryRun() throws {
            let baton = try scriptedBaton(workers: 1, tag: "bd-use")
            defer { baton.stop() }
            let src = Self.source(baton, "v2")
            let bad: [([String], String)] = [
                (["--need", "lots", src], "--need expects a size like 512MiB, got \"lots\""),
                // baton's size grammar and bound (a docs audit: "50%" passed here and was refused
                // by baton preflight on the host).
                (["--need", "50%", src], "--need expects a size like 512MiB, got \"50%\""),
                (["--need", "10", src], "--need expects a size like 512MiB, got \"10\""),
                (["--need", "2PiB", src], "--need: at most 1PiB, got \"2PiB\""),
                (["--release-id", "../x", src], "--release-id: letters, digits"),
                // Longer than a file name may be (a fleet audit: 300 characters passed, every host was
                // preflighted, then rsync failed on the first).
                (["--release-id", String(repeating: "a", count: 256), src], "--release-id: at most 255 characters (a file name), got 256"),
                ([baton.directory + "/missing"], "is not a directory"),
                ([], "RELEASE_DIR is required"),
                (["--transport", "ftp", src], "--transport must be ssh or local"),
                // Each "host" would be this machine's one baton, deployed to again and again.
                (["--hosts", "web1,web2", src], "--transport local deploys on this machine: one --host at most, got 2"),
                (["--bogus", src], "unknown option --bogus"),
                // Checked before any host is contacted (an audit: baton deploy refused it on the
                // first host, after the preflights and that host's copy).
                (["--timeout", "5x", src], "--timeout expects a duration like 10m or 1m30s, got \"5x\""),
                (["--timeout", "-5s", src], "--timeout expects a duration like 10m or 1m30s, got \"-5s\""),
                (["--timeout", "10", src], "--timeout expects a duration like 10m or 1m30s, got \"10\""),
                // What baton refuses, the script refuses (a re-audit: these were copied first).
                (["--timeout", "5 s", src], "--timeout expects a duration like 10m or 1m30s, got \"5 s\""),
                (["--timeout", ".5s", src], "--timeout expects a duration like 10m or 1m30s, got \".5s\""),
                (["--timeout", "1.s", src], "--timeout expects a duration like 10m or 1m30s, got \"1.s\""),
                (["--timeout", "0s", src], "--timeout must be more than 0s, got \"0s\""),
                // Past baton's bound (2^63-1 ns), which baton refused only after the copy.
                (["--timeout", "99999999999h", src], "--timeout: too large, got \"99999999999h\""),
                (["--timeout", "106752d", src], "--timeout: too large, got \"106752d\""),
            ]
            for (args, message) in bad {
                let result = try Self.deploy(baton, args)
                #expect(result.code == 2, "\(args): \(result.stderr)")
                #expect(result.stderr.hasPrefix("baton-deploy: ") && result.stderr.contains(message), "\(args): \(result.stderr)")
                #expect(!result.stderr.contains("\n"), "one line: \(result.stderr)")
            }
            let noApp = try TestProcess.run([Self.script, "--transport", "local", src])
            #expect(noApp.code == 2 && noApp.stderr.contains("exactly one of --app NAME, --socket PATH, --config FILE"))
            let before = try baton.status()
            let dry = try Self.deploy(baton, ["--dry-run", "--release-id", "v2", src])
            #expect(dry.code == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("would run: baton deploy --release \(baton.directory)/releases/v2"))
            #expect(access(baton.directory + "/releases/v2", F_OK) != 0)
            // A folder already there: rsync shows what it would change, baton prints its plan.
            writeRunScript(baton.directory + "/releases/v3")
            let planned = try Self.deploy(baton, ["--dry-run", "--release-id", "v3", Self.source(baton, "v3", flags: ["--fail-boot"])])
            #expect(planned.code == 0, "\(planned.stderr)")
            #expect(planned.stdout.contains(">f.s") && planned.stdout.contains(" run\n"), "rsync --itemize-changes: \(planned.stdout)")
            #expect(planned.stdout.contains("dry run: nothing changed"))
            #expect(planned.stdout.contains("baton-deploy: dry run on: localhost (nothing changed)"))
            #expect(!(ProcFS.read(baton.directory + "/releases/v3/run") ?? "").contains("--fail-boot"), "nothing copied")
            let after = try baton.status()
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
            #expect(after.release == baton.releaseDirectory)
        }

        @Test("retention: with keep_releases = 2, old deployed folders are pruned after deploys; current, previous and folders baton did not deploy never")
        func retention() throws {
            let baton = try scriptedBaton(workers: 2, tag: "bd-ret", extra: "[deploy]\nkeep_releases = 2\nreleases_directory = \"RELEASES\"")
            defer { baton.stop() }
            let releases = baton.directory + "/releases"
            var previous = baton.releaseDirectory
            // r1 is [app] directory: baton started in it but never deployed it, so it stays.
            for (id, gone) in [("r2", nil), ("r3", nil), ("r4", "r2"), ("r5", "r3")] {
                let result = try Self.deploy(baton, ["--release-id", id, Self.source(baton, id)])
                #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
                if let gone {
                    #expect(result.stdout.contains("pruning 1 old release (keep_releases = 2): \(gone)"), "\(result.stdout)")
                    let removed = baton.process.waitForLine(containing: "removed release folder \(releases)/\(gone)", timeout: .seconds(20))
                    #expect(removed != nil)
                } else {
                    #expect(!result.stdout.contains("pruning"), "current, previous and the never-deployed r1 are all there is")
                }
                #expect(access(releases + "/" + id + "/run", F_OK) == 0)
                #expect(access(previous + "/run", F_OK) == 0, "the previous release \(previous) is kept")
                previous = releases + "/" + id
            }
            #expect(try ReleaseFolders.scan(releases).map(\.name).sorted() == ["r1", "r4", "r5"])
            // Folders shipped but never deployed are never pruned, not even on demand.
            writeRunScript(releases + "/x1")
            writeRunScript(releases + "/x2")
            let marked = try baton.cli(["releases"])
            #expect(marked.stdout.contains("not-deployed"), "\(marked.stdout)")
            #expect(!marked.stdout.contains("prune     "), "\(marked.stdout)")
            let pruneNow = try baton.cli(["releases", "--prune"])
            #expect(pruneNow.code == 0, "\(pruneNow.stderr)")
            #expect(pruneNow.stdout.contains("removed 0 release folders"), "\(pruneNow.stdout)")
            #expect(try ReleaseFolders.scan(releases).map(\.name).sorted() == ["r1", "r4", "r5", "x1", "x2"])
            TestPaths.remove(releases + "/x1")
            TestPaths.remove(releases + "/x2")
            // Nothing left to prune: --prune says so and removes nothing.
            let prune = try baton.cli(["releases", "--prune"])
            #expect(prune.code == 0, "\(prune.stderr)")
            #expect(prune.stdout.contains("removed 0 release folders"), "\(prune.stdout)")
            let listing = try baton.cli(["releases", "--json"])
            #expect(listing.code == 0, "\(listing.stderr)")
            let report = try JSONDecoder().decode(ReleasesReport.self, from: Data(listing.stdout.utf8))
            #expect(report.directory == releases)
            #expect(report.keep == 2)
            #expect(report.releases.map(\.name) == ["r5", "r4", "r1"], "\(report.releases)")
            #expect(report.releases.map(\.mark) == [.current, .previous, .appDirectory])
            let table = try baton.cli(["releases"])
            #expect(table.stdout.contains("\(releases): 3 releases, keep_releases = 2"), "\(table.stdout)")
            #expect(table.stdout.contains("current "))
            // A rollback makes r4 current and r5 previous: both still protected.
            let rollback = try baton.cli(["rollback"])
            #expect(rollback.code == 0, "\(rollback.stderr)")
            let after = try JSONDecoder().decode(ReleasesReport.self, from: Data(try baton.cli(["releases", "--json"]).stdout.utf8))
            #expect(Set(after.releases.map { "\($0.name):\($0.mark.rawValue)" }) == ["r4:current", "r5:previous", "r1:app-dir"])
        }

        @Test("retention off (no releases_directory): releases lists the current release's folder, --prune refuses, exit 1")
        func retentionOff() throws {
            let baton = try scriptedBaton(workers: 1, tag: "bd-off")
            defer { baton.stop() }
            let listing = try baton.cli(["releases"])
            #expect(listing.code == 0)
            #expect(listing.stdout.contains("retention off"))
            #expect(listing.stdout.contains("current "))
            let prune = try baton.cli(["releases", "--prune"])
            #expect(prune.code == 1)
            #expect(prune.stderr == "baton: retention is off: set [deploy] releases_directory to prune", "\(prune.stderr)")
        }
    }
}
