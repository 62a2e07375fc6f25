import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// Workers as process trees: signal state, group stops, strays.
    @Suite("worker process trees")
    struct ProcessTreeTests {
        @Test("a python3 worker spawned by baton has no blocked signals and dies from SIGTERM")
        func python3WorkerTakesSIGTERM() throws {
            let directory = TestPaths.temporaryDirectory("py")
            defer { TestPaths.remove(directory) }
            // Accepts on fd 3; no signal handling of its own: SIGTERM's default kills it.
            let script = directory + "/worker.py"
            TestPaths.write(
                script,
                """
                import socket, sys
                s = socket.socket(fileno=3)
                print("python worker up", flush=True)
                while True:
                    c, _ = s.accept()
                    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n")
                    c.close()
                """)
            let baton = try BatonHarness(
                workers: 1, command: ["python3", script],
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    mode = "delay"
                    delay = "300ms"
                    [stop]
                    timeout = "30s"
                    """, tag: "py")
            defer { baton.stop() }
            // Ready after a 300 ms delay is not yet python: `python3` may be a wrapper script
            // (pyenv's shim is bash, which blocks SIGINT and ignores SIGQUIT while it runs its
            // command substitutions) that execs python later. Read the state once python runs.
            #expect(baton.process.waitForLine(containing: "python worker up", timeout: .seconds(30)) != nil)
            let worker = try #require(try baton.status().workers.first)
            let blocked = ProcFS.blockedSignals(of: worker.pid)
            #expect(blocked == 0, "SigBlk of the python worker: \(String(blocked ?? 0, radix: 16))")
            // python3 ignores SIGXFSZ itself; what matters is that nothing baton
            // inherited from its threads ignores the stop signals.
            let ignored = ProcFS.read("/proc/\(worker.pid)/status").flatMap { ProcParsers.statusMask($0, field: "SigIgn") } ?? ~0
            for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2] {
                #expect(ignored & (UInt64(1) << UInt64(sig - 1)) == 0, "signal \(sig) is ignored in the worker")
            }
            #expect(HTTP.get(port: baton.port, path: "/")?.status == 200)
            // With a 30 s drain timeout, only SIGTERM itself can end it quickly:
            // the exit must say signal 15, not 9.
            baton.process.signal(SIGTERM)
            let exited = baton.process.waitForLine(containing: "worker exited", timeout: .seconds(10))
            #expect(exited?.contains("signal 15") == true, "\(exited ?? "no exit line")")
            #expect(baton.process.wait(timeout: .seconds(10)) == 0)
        }

        @Test("a worker that forks a child holding fd 3 is stopped whole, on crash and on stop")
        func forkingWorkerStoppedWhole() throws {
            let directory = TestPaths.temporaryDirectory("fork")
            defer { TestPaths.remove(directory) }
            // The shell leaves a background child that inherits fd 3, then
            // becomes the demo worker.
            let script = directory + "/fork.sh"
            TestPaths.write(script, "#!/bin/sh\nsleep 300 &\nexec \(TestPaths.executable("baton-demo-worker"))\n", mode: 0o755)
            let baton = try BatonHarness(workers: 1, command: [script], tag: "fork")
            defer { baton.stop() }
            let first = try #require(try baton.status().workers.first)
            let children = ProcFS.tree(of: first.pid).dropFirst()
            let child = try #require(children.first)
            #expect(ProcFS.read("/proc/\(child)/cmdline")?.hasPrefix("sleep") == true)
            #expect(readlinkText("/proc/\(child)/fd/3")?.hasPrefix("socket:") == true)

            // The leader crashes: what is left of its group goes too.
            #expect(kill(first.pid, SIGKILL) == 0)
            #expect(waitGone(child, timeout: .seconds(10)), "the leftover child \(child) kept running")
            #expect(baton.process.waitForLine(timeout: .seconds(20)) { $0.contains("worker ready") && !$0.contains("pid=\(first.pid)") } != nil)

            // A graceful stop of baton takes the new tree down whole.
            let second = try #require(try baton.status().workers.first)
            let secondChild = try #require(ProcFS.tree(of: second.pid).dropFirst().first)
            #expect(baton.process.stop() == 0)
            #expect(waitGone(second.pid, timeout: .seconds(5)))
            #expect(waitGone(secondChild, timeout: .seconds(5)))
        }

        /// Found by a hostile-input audit: a worker's child that called setsid() left the group
        /// the stop signals go to, was handed to baton when its worker exited, and outlived
        /// baton holding the listening socket: the next `baton serve` failed with "Address
        /// already in use".
        @Test("a worker's child that left its process group is reported once its worker is gone, and killed when baton stops")
        func escapedChildIsKilledAtStop() throws {
            let directory = TestPaths.temporaryDirectory("escape")
            defer { TestPaths.remove(directory) }
            let script = directory + "/escape.sh"
            TestPaths.write(
                script, "#!/bin/sh\nsetsid sleep 300 &\necho $! > \(directory)/escapee\nexec \(TestPaths.executable("baton-demo-worker"))\n",
                mode: 0o755)
            let baton = try BatonHarness(workers: 1, command: [script], tag: "escape")
            defer { baton.stop() }
            func escapee() throws -> pid_t { try #require(ProcFS.read(directory + "/escapee").flatMap { Int32($0.split(separator: "\n").first ?? "") }) }
            let first = try escapee()
            #expect(readlinkText("/proc/\(first)/fd/3")?.hasPrefix("socket:") == true, "it holds the listening socket")
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2")])
            #expect(deployed.code == 0, "\(deployed.stderr)")
            #expect(
                baton.process.waitForLine(timeout: .seconds(10)) {
                    $0.contains("pid \(first) left its worker's process group and its parent exited, so baton adopted it")
                } != nil)
            #expect(!waitGone(first, timeout: .zero), "it runs on until baton stops")
            let second = try escapee()
            #expect(second != first)
            #expect(baton.process.stop() == 0)
            #expect(waitGone(first, timeout: .seconds(5)), "pid \(first) outlived baton")
            #expect(waitGone(second, timeout: .seconds(5)), "pid \(second) outlived baton")
        }

        /// An apps audit: after a stop that SIGKILLed the helpers workers had left behind
        /// (`setsid`, SIGTERM ignored), 17 `<defunct>` stayed under pid 1: baton exited before
        /// its reaper ran, and an init that does not reap (a container's) keeps them for good.
        /// baton runs under a subreaper that reaps only baton, as such an init, and lists the
        /// zombies handed to it.
        @Test("the helpers baton kills at its stop are reaped before it exits: no zombie left")
        func strayKilledAtStopLeavesNoZombie() throws {
            let directory = TestPaths.temporaryDirectory("zombie")
            defer { TestPaths.remove(directory) }
            let script = directory + "/helper.sh"
            TestPaths.write(
                script,
                "#!/bin/sh\nsetsid sh -c 'trap \"\" TERM; sleep 300' &\nexec \(TestPaths.executable("baton-demo-worker"))\n",
                mode: 0o755)
            let reaper = directory + "/init.py"
            TestPaths.write(
                reaper,
                """
                import ctypes, os, signal, sys, time
                ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
                pid = os.fork()
                if pid == 0:
                    os.execv(sys.argv[1], sys.argv[1:])
                signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
                _, status = os.waitpid(pid, 0)
                time.sleep(0.3)
                me = str(os.getpid())
                zombies = []
                for p in os.listdir('/proc'):
                    try:
                        fields = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()
                    except (OSError, IndexError):
                        continue
                    if fields[0] == 'Z' and fields[1] == me:
                        zombies.append(p)
                open("\(directory)/zombies", 'w').write(' '.join(zombies))
                for p in zombies:
                    os.waitpid(int(p), 0)
                sys.exit(os.waitstatus_to_exitcode(status))
                """)
            let baton = try BatonHarness(workers: 3, command: [script], tag: "zombie", wrapper: ["/usr/bin/python3", reaper])
            defer { baton.stop() }
            #expect(baton.process.stop() == 0)
            #expect(ProcFS.read(directory + "/zombies") == "", "zombies left: \(ProcFS.read(directory + "/zombies") ?? "none listed")")
        }

        /// True once `pid` no longer exists (zombies of other parents count as gone unless
        /// `zombiesCount` is false).
        private func waitGone(_ pid: pid_t, timeout: Duration, zombiesCount: Bool = true) -> Bool {
            let deadline = monotonicNow() + timeout
            while monotonicNow() < deadline {
                guard let stat = ProcFS.read("/proc/\(pid)/stat"), let fields = ProcParsers.statFields(stat) else { return true }
                if fields.state == "Z" && zombiesCount { return true }
                var pfd = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&pfd, 0, 20)
            }
            return false
        }

        private func readlinkText(_ path: String) -> String? {
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}
