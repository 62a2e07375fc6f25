import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension ThirdIntegration {
    /// Found by a daemonize audit: a worker command that daemonizes (`gunicorn --daemon`: its
    /// process exits 0 at once, a grandchild in a session of its own keeps the listening socket
    /// and forks workers) failed its start, but baton SIGKILLed only the daemon's first process:
    /// its children held the listening socket after baton stopped (start-up) or ran on beside
    /// the old workers (a failed deploy), and no line said the command daemonized.
    @Suite("daemonizing workers")
    struct DaemonizingWorkerTests {
        /// Double-forks like a daemon: the command's process waits until the daemon (setsid, its
        /// stdio on /dev/null, holding the inherited fd 3) forked 2 children and wrote their pids
        /// and what its fd 3 is to `DIR/pids.PID`, then exits 0.
        static let script = """
            import os, sys, time
            d = sys.argv[1]
            r, w = os.pipe()
            if os.fork() > 0:
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            os.close(r)
            os.setsid()
            if os.fork() > 0:
                os._exit(0)
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            pids = [os.getpid()]
            for _ in range(2):
                p = os.fork()
                if p == 0:
                    os.close(w)
                    time.sleep(300)
                    os._exit(0)
                pids.append(p)
            name = d + "/pids.%d" % os.getpid()
            with open(name + ".tmp", "w") as f:
                f.write(" ".join(map(str, pids)) + "\\n" + os.readlink("/proc/self/fd/3") + "\\n")
            os.rename(name + ".tmp", name)
            os.write(w, b"x")
            os.close(w)
            time.sleep(300)
            """

        /// Defines `daemonize(d, name, stdio_to_null=False, exec_argv=None)` for a worker script:
        /// a double fork whose middle process exits at once (the daemon, in a session of its own,
        /// is handed to baton), the daemon's pid written to `d/daemon.NAME`, then it sleeps, or
        /// execs `exec_argv` (a path, then the arguments with argv[0]).
        static let daemonize = """
            import os, socket, sys, time
            def daemonize(d, name, stdio_to_null=False, exec_argv=None):
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        if stdio_to_null:
                            null = os.open("/dev/null", os.O_RDWR)
                            for fd in (0, 1, 2):
                                os.dup2(null, fd)
                        with open(d + "/pids.tmp" + name, "w") as f:
                            f.write("%d\\n" % os.getpid())
                        os.rename(d + "/pids.tmp" + name, d + "/daemon." + name)
                        if exec_argv:
                            os.execv(exec_argv[0], exec_argv[1:])
                        time.sleep(300)
                    os._exit(0)

            """

        /// The pids `daemonize` recorded under `names` in `directory`.
        static func recordedDaemons(in directory: String, _ names: [String]) -> [pid_t] {
            names.compactMap { (ProcFS.read(directory + "/daemon." + $0) ?? "").split(separator: "\n").first.flatMap { pid_t($0) } }
        }

        /// SIGKILL to what `daemonize` recorded and still runs: a process of the test's script
        /// (its command line names `directory`) or the `sleep` it exec'd.
        static func reapDaemons(in directory: String, _ names: [String]) {
            for pid in recordedDaemons(in: directory, names)
            where ProcFS.read("/proc/\(pid)/cmdline").map({ $0.contains(directory) || $0.hasPrefix("/bin/sleep") }) == true {
                kill(pid, SIGKILL)
            }
        }

        /// `count` daemons were recorded, each is gone within 5 s (a failed release took them
        /// along), and `baton status` lists no stray; returns that status.
        private func expectTakenAlong(_ pids: [pid_t], count: Int, _ baton: BatonHarness) throws -> StatusReport {
            #expect(pids.count == count, "\(pids) \(baton.process.stderrLines.suffix(10))")
            for pid in pids {
                #expect(waitGone(pid, timeout: .seconds(5)), "daemon \(pid) of the failed release runs on: \(baton.process.stderrLines.suffix(10))")
            }
            let status = try baton.status()
            #expect((status.strays ?? []).isEmpty, "strays: \(status.strays ?? [])")
            return status
        }

        /// The daemons' records: each one's pids (daemon first) and what its fd 3 was.
        static func daemons(in directory: String) -> [(pids: [pid_t], fd3: String)] {
            (Filesystem.entryNames(of: directory) ?? []).filter { $0.hasPrefix("pids.") && !$0.hasSuffix(".tmp") }.compactMap { name in
                guard let text = ProcFS.read(directory + "/" + name) else { return nil }
                let lines = text.split(separator: "\n").map(String.init)
                guard lines.count == 2 else { return nil }
                return (lines[0].split(separator: " ").compactMap { Int32($0) }, lines[1])
            }
        }

        /// SIGKILL to what the test's daemons left running (the script's processes only).
        static func reap(_ directory: String, script: String) {
            for daemon in daemons(in: directory) {
                for pid in daemon.pids where ProcFS.read("/proc/\(pid)/cmdline")?.contains(script) == true { kill(pid, SIGKILL) }
            }
        }

        @Test("a start-up whose command daemonizes fails saying so, and no process of the daemon outlives baton's stopped line")
        func daemonizingStartUp() throws {
            let directory = TestPaths.temporaryDirectory("dmns")
            let script = directory + "/daemon.py"
            TestPaths.write(script, Self.script)
            defer {
                Self.reap(directory, script: script)
                TestPaths.remove(directory)
            }
            let baton = try BatonHarness(
                workers: 1, command: ["python3", script, directory], extraApp: "start_attempts = 2", waitReady: false, tag: "dmns", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let code = baton.process.wait(timeout: .seconds(40))
            let log = baton.process.stderrLines
            #expect(code == 1, "\(log.suffix(15))")
            let daemons = Self.daemons(in: directory)
            #expect(daemons.count == 2, "one daemon per start: \(daemons.map(\.pids))")
            for daemon in daemons {
                #expect(daemon.pids.count == 3 && daemon.fd3.hasPrefix("socket:"), "\(daemon)")
                for pid in daemon.pids {
                    #expect(waitGone(pid, timeout: .milliseconds(300)), "pid \(pid) of a daemon (\(daemon.pids)) outlived baton")
                }
            }
            #expect(
                log.contains { $0.contains("start-up failed") && $0.contains("did it daemonize") },
                "the failure does not say it daemonized: \(log.suffix(15))")
            let stopped = try #require(log.lastIndex { $0.contains(" INFO stopped") }, "\(log.suffix(15))")
            #expect(!log[stopped...].contains { $0.contains("adopted") }, "lines after stopped: \(log[stopped...])")
        }

        @Test("a deploy whose command daemonizes fails saying so, and the daemon's whole tree is killed with it")
        func daemonizingDeploy() throws {
            let directory = TestPaths.temporaryDirectory("dmnd")
            let script = directory + "/daemon.py"
            TestPaths.write(script, Self.script)
            defer {
                Self.reap(directory, script: script)
                TestPaths.remove(directory)
            }
            let baton = try BatonHarness(workers: 1, tag: "dmnd", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let old = try #require(try baton.status().workers.first)
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", "python3", script, directory])
            let said = deployed.stdout + deployed.stderr
            #expect(deployed.code != 0, "\(said)")
            #expect(said.contains("nothing changed"), "\(said)")
            #expect(said.contains("did it daemonize"), "the failure does not say it daemonized: \(said)")
            let daemons = Self.daemons(in: directory)
            #expect(daemons.count == 1, "\(daemons.map(\.pids))")
            for daemon in daemons {
                #expect(daemon.pids.count == 3 && daemon.fd3.hasPrefix("socket:"), "\(daemon)")
                for pid in daemon.pids {
                    #expect(waitGone(pid, timeout: .seconds(5)), "pid \(pid) of the daemon (\(daemon.pids)) runs on after the failed deploy")
                }
            }
            let status = try baton.status()
            #expect((status.strays ?? []).isEmpty, "strays: \(status.strays ?? [])")
            #expect(status.workers.map(\.pid) == [old.pid], "the old worker keeps serving: \(status.workers)")
            #expect(baton.process.stop() == 0)
        }

        /// A re-audit: the escaped processes a failed start took along were picked by start time
        /// alone, so slot 0's daemonizing start SIGKILLed the `setsid` helper slot 1's healthy
        /// worker had started meanwhile.
        @Test("a failed start takes along only what escaped from its own worker, not another slot's helpers")
        func aFailedStartLeavesAnotherSlotsHelpers() throws {
            let directory = TestPaths.temporaryDirectory("dmnh")
            let script = directory + "/daemon.py"
            TestPaths.write(script, Self.script)
            // Slot 1 starts a helper that leaves its group and is handed to baton, then serves
            // (READY=1); slot 0 waits for that helper, then daemonizes.
            TestPaths.write(
                directory + "/slots.py",
                """
                import os, socket, subprocess, sys, time
                d = sys.argv[1]
                if os.environ["BATON_SLOT"] == "1":
                    subprocess.run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > " + d + "/helper.tmp && mv " + d + "/helper.tmp " + d + "/helper"])
                    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
                    time.sleep(300)
                while not os.path.exists(d + "/helper"):
                    time.sleep(0.02)
                os.execvp("python3", ["python3", d + "/daemon.py", d])
                """)
            var helper: pid_t?
            defer {
                if let helper, ProcFS.read("/proc/\(helper)/cmdline")?.hasPrefix("sleep") == true { kill(helper, SIGKILL) }
                Self.reap(directory, script: script)
                TestPaths.remove(directory)
            }
            let baton = try BatonHarness(
                workers: 2, command: ["python3", directory + "/slots.py", directory], extraApp: "start_attempts = 1", waitReady: false, tag: "dmnh",
                reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let code = baton.process.wait(timeout: .seconds(40))
            let log = baton.process.stderrLines
            #expect(code == 1, "\(log.suffix(15))")
            helper = (ProcFS.read(directory + "/helper") ?? "").split(separator: "\n").first.flatMap { Int32($0) }
            let pid = try #require(helper, "slot 1 started no helper: \(log.suffix(15))")
            let took = log.filter { $0.contains("failed its start: SIGKILL to the") }
            #expect(!took.isEmpty, "slot 0's daemon was not taken along: \(log.suffix(15))")
            #expect(!took.contains { $0.contains(String(pid)) }, "slot 1's helper \(pid) was taken for slot 0's: \(took)")
        }

        /// An apps audit: two new workers daemonized during a surge deploy; one failed its start,
        /// and the rollback stopped the other. Its daemon, reported adopted as the first failure
        /// was handled, was left out of what its failed start took along: the failed release's
        /// daemon went on answering requests (29 of 30) beside the old workers.
        @Test("a failed deploy takes along what escaped from every new worker, one already reported adopted too")
        func aFailedDeployLeavesNoDaemonOfItsRelease() throws {
            let directory = TestPaths.temporaryDirectory("dmn2")
            // Each new worker daemonizes (its middle process exits at once); slot 0's then waits
            // in its start (the rollback stops it), slot 1's exits 0 once both daemons run.
            let script = directory + "/two.py"
            TestPaths.write(
                script,
                Self.daemonize + """
                    d, slot = sys.argv[1], os.environ["BATON_SLOT"]
                    daemonize(d, slot, stdio_to_null=True)
                    if slot == "0":
                        time.sleep(300)
                    while not all(os.path.exists(d + "/daemon." + s) for s in "01"):
                        time.sleep(0.02)
                    sys.exit(0)
                    """)
            defer {
                Self.reapDaemons(in: directory, ["0", "1"])
                TestPaths.remove(directory)
            }
            let baton = try BatonHarness(workers: 2, tag: "dmn2", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let old = try baton.status().workers.map(\.pid)
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", "python3", script, directory])
            #expect(deployed.code == 1, "\(deployed.stdout)\(deployed.stderr)")
            #expect(deployed.stderr.contains("did it daemonize"), "\(deployed.stderr)")
            let status = try expectTakenAlong(Self.recordedDaemons(in: directory, ["0", "1"]), count: 2, baton)
            #expect(status.workers.map(\.pid) == old)
        }

        /// An apps re-audit: new workers that daemonized, sent READY=1 and then one of them
        /// exited 1: the deploy failed and rolled back, but their daemons ran on (20 of 20
        /// requests answered by the failed release); one exec'd with an empty environment
        /// (`env -i`, no LISTEN_PID to tell whose it was) was spared even by a failed start.
        @Test("a failed deploy takes along the daemons of its workers that were ready, one with an empty environment too")
        func aFailedDeployTakesAlongTheDaemonsOfReadyWorkers() throws {
            let directory = TestPaths.temporaryDirectory("dmnr")
            let script = directory + "/ready.py"
            // Slot 0's daemon is a fork (its environment kept); slot 1's is exec'd by `env -i`
            // and keeps the worker's output pipe. Both workers send READY=1 once their daemon
            // runs; slot 1's then exits 1 when both do, slot 0's waits (the rollback stops it).
            TestPaths.write(
                script,
                Self.daemonize + """
                    d, slot = sys.argv[1], os.environ["BATON_SLOT"]
                    daemonize(d, slot, exec_argv=["/usr/bin/env", "env", "-i", "/bin/sleep", "300"] if slot == "1" else None)
                    while not os.path.exists(d + "/daemon." + slot):
                        time.sleep(0.02)
                    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
                    if slot == "0":
                        time.sleep(300)
                    while not all(os.path.exists(d + "/daemon." + s) for s in "01"):
                        time.sleep(0.02)
                    time.sleep(0.2)
                    sys.exit(1)
                    """)
            defer {
                Self.reapDaemons(in: directory, ["0", "1"])
                TestPaths.remove(directory)
            }
            // A window the crash falls in: the release fails (not a crash once it served).
            let baton = try BatonHarness(
                workers: 2, sections: BatonHarness.defaultSections + "\n[deploy]\nstability_window = \"5s\"", tag: "dmnr", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", "python3", script, directory])
            #expect(deployed.code == 1, "\(deployed.stdout)\(deployed.stderr)")
            let status = try expectTakenAlong(Self.recordedDaemons(in: directory, ["0", "1"]), count: 2, baton)
            #expect(status.workers.allSatisfy { $0.release == baton.releaseDirectory }, "\(status.workers)")
        }

        /// An apps re-audit 2: the canary failed its start (`nothing changed`) while another
        /// slot's new worker, ready, had started a daemon; that worker was drained after the
        /// deploy ended, and its daemon answered 11 of 30 requests for the failed release.
        @Test("a canary that fails takes along the daemons of the new workers that waited for it")
        func aFailedCanaryTakesAlongTheDaemonsOfTheWorkersThatWaited() throws {
            let directory = TestPaths.temporaryDirectory("dmnc")
            let script = directory + "/canary.py"
            TestPaths.write(
                script,
                Self.daemonize + """
                    d, slot = sys.argv[1], os.environ["BATON_SLOT"]
                    if slot == "0":
                        while not os.path.exists(d + "/daemon.1"):
                            time.sleep(0.02)
                        time.sleep(0.2)
                        sys.exit(1)
                    daemonize(d, "1")
                    while not os.path.exists(d + "/daemon.1"):
                        time.sleep(0.02)
                    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
                    time.sleep(300)
                    """)
            defer {
                Self.reapDaemons(in: directory, ["1"])
                TestPaths.remove(directory)
            }
            let baton = try BatonHarness(workers: 2, tag: "dmnc", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", "python3", script, directory])
            #expect(deployed.code == 1 && deployed.stderr.contains("nothing changed"), "\(deployed.stdout)\(deployed.stderr)")
            _ = try expectTakenAlong(Self.recordedDaemons(in: directory, ["1"]), count: 1, baton)
        }

        /// The apps re-audit: a serving worker that dropped LISTEN_PID from its environment (as
        /// `sd_listen_fds(1)` does) started `setsid` helpers while its slot's new worker, of
        /// another release, failed its start: the helpers were taken for the new worker's (its
        /// slot, started after it) and SIGKILLed.
        @Test("a failed start leaves the helpers of its slot's serving worker of another release")
        func aFailedStartLeavesItsSlotsServingWorkersHelpers() throws {
            let directory = TestPaths.temporaryDirectory("dmno")
            let old = directory + "/old.py"
            // The serving worker: once `go` exists, a helper that leaves its group, without LISTEN_PID.
            TestPaths.write(
                old,
                """
                import os, socket, subprocess, sys, time
                d = sys.argv[1]
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
                while not os.path.exists(d + "/go"):
                    time.sleep(0.02)
                env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
                subprocess.run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > " + d + "/helper.tmp && mv " + d + "/helper.tmp " + d + "/helper"], env=env)
                time.sleep(300)
                """)
            // The new worker: `go`, then exit 1 once the helper runs (a failed start).
            let new = directory + "/new.py"
            TestPaths.write(
                new,
                """
                import os, sys, time
                d = sys.argv[1]
                open(d + "/go", "w").close()
                while not os.path.exists(d + "/helper"):
                    time.sleep(0.02)
                sys.exit(1)
                """)
            var helper: pid_t?
            defer {
                if let helper, ProcFS.read("/proc/\(helper)/cmdline")?.hasPrefix("sleep") == true { kill(helper, SIGKILL) }
                TestPaths.remove(directory)
            }
            let baton = try BatonHarness(workers: 1, command: ["python3", old, directory], tag: "dmno", reuse: directory)
            defer { baton.stop(keepDirectory: true) }
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", "python3", new, directory])
            #expect(deployed.code == 1, "\(deployed.stdout)\(deployed.stderr)")
            helper = (ProcFS.read(directory + "/helper") ?? "").split(separator: "\n").first.flatMap { pid_t($0) }
            let pid = try #require(helper, "no helper: \(baton.process.stderrLines.suffix(10))")
            #expect(kill(pid, 0) == 0, "the serving worker's helper \(pid) was killed: \(baton.process.stderrLines.suffix(10))")
        }

        /// An output audit: a stray (`setsid`) that outlived its worker wrote to the worker's
        /// output pipe, which baton closed when it reaped the worker: its lines went nowhere, and
        /// one without the worker's reader (Python's `subprocess` closes it) died of SIGPIPE.
        /// Re-audits: a stray's child holding the pipe while the stray had closed its own stdout
        /// was not found, and `baton upgrade` closed the pipe (SIGPIPE at the next line).
        @Test("a stray that outlives its worker is still logged, across an upgrade too, and lives on; a line begun before the upgrade is one line")
        func aStraysOutputAfterItsWorkerExited() throws {
            let directory = TestPaths.temporaryDirectory("stray-out")
            defer { TestPaths.remove(directory) }
            // The stray's child begins a line once `half` exists and ends it once `go` does; the
            // stray itself closes its stdout.
            let child =
                "while [ ! -e \(directory)/half ]; do sleep 0.05; done; printf late-line-; echo $BASHPID > \(directory)/stray; "
                + "while [ ! -e \(directory)/go ]; do sleep 0.05; done; echo of-the-stray; exec sleep 60"
            let stray = "exec 1000>&-; (\(child)) & exec 1>&- 2>&-; wait"
            // The next worker's child begins a line once `half` exists (after the demo worker's
            // own first line) and ends it once `go` does.
            TestPaths.write(
                directory + "/waiter.sh",
                "while [ ! -e \(directory)/half ]; do sleep 0.05; done; printf worker-half-; echo $$ > \(directory)/waiter; "
                    + "while [ ! -e \(directory)/go ]; do sleep 0.05; done; echo of-the-worker\n")
            // Only the first worker starts a stray (its replacement, the same command, would too).
            let command = [
                "/bin/sh", "-c",
                "if mkdir \(directory)/once 2>/dev/null; then setsid /bin/bash -c '\(stray)' </dev/null & "
                    + "else /bin/sh \(directory)/waiter.sh & fi; exec \(TestPaths.executable("baton-demo-worker"))",
            ]
            let baton = try BatonHarness(workers: 1, command: command, tag: "stray-out")
            defer { baton.stop() }
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            #expect(baton.process.waitForLine(containing: "outlived worker pid", timeout: .seconds(10)) != nil, "\(baton.process.stderrLines.suffix(8))")
            TestPaths.write(directory + "/half", "")
            // Each half line read by baton before the upgrade (a re-audit: the part of a line
            // read before the execve was lost, a worker's as a stray's).
            for name in ["stray", "waiter"] {
                let pid = try #require(Self.waitForPid(in: directory + "/" + name, timeout: .seconds(10)), "no \(name)")
                #expect(Self.waitUntilRead(outputOf: pid, timeout: .seconds(10)), "\(name)'s output not read")
            }
            let upgrade = try baton.cli(["upgrade"])
            #expect(upgrade.code == 0, "\(upgrade.stderr)")
            TestPaths.write(directory + "/go", "")
            let line = baton.process.waitForLine(containing: "of-the-stray", timeout: .seconds(10))
            #expect(line?.contains("[stray pid ") == true, "\(baton.process.stderrLines.suffix(8))")
            #expect(line?.contains("late-line-of-the-stray") == true, "\(String(describing: line))")
            let workerLine = baton.process.waitForLine(containing: "of-the-worker", timeout: .seconds(10))
            #expect(
                workerLine?.contains("worker-half-of-the-worker") == true,
                "\(baton.process.stderrLines.filter { $0.contains("half") || $0.contains("upgrade") })")
            let pid = try #require((ProcFS.read(directory + "/stray") ?? "").split(separator: "\n").first.flatMap { Int32($0) })
            #expect(kill(pid, 0) == 0, "the stray's child died (SIGPIPE?)")
        }

        /// The pid written in `path`, once it is.
        private static func waitForPid(in path: String, timeout: Duration) -> pid_t? {
            let deadline = monotonicNow() + timeout
            repeat {
                if let pid = (ProcFS.read(path) ?? "").split(separator: "\n").first.flatMap({ pid_t($0) }) { return pid }
                var pfd = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&pfd, 0, 20)
            } while monotonicNow() < deadline
            return nil
        }

        /// True once `pid`'s stdout (a pipe) holds no byte unread: its reader took them.
        private static func waitUntilRead(outputOf pid: pid_t, timeout: Duration) -> Bool {
            let fd = open("/proc/\(pid)/fd/1", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            let deadline = monotonicNow() + timeout
            repeat {
                var waiting: Int32 = 0
                if ioctl(fd, UInt(FIONREAD), &waiting) == 0, waiting == 0 { return true }
                var pfd = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&pfd, 0, 20)
            } while monotonicNow() < deadline
            return false
        }

        /// True once `pid` no longer exists (zombies of other parents count as gone).
        private func waitGone(_ pid: pid_t, timeout: Duration) -> Bool {
            let deadline = monotonicNow() + timeout
            repeat {
                guard let stat = ProcFS.read("/proc/\(pid)/stat"), let fields = ProcParsers.statFields(stat) else { return true }
                if fields.state == "Z" { return true }
                var pfd = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&pfd, 0, 20)
            } while monotonicNow() < deadline
            return false
        }
    }
}
