import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension ThirdIntegration {
    /// The worker watchdog (`[readiness] watchdog`, systemd's WatchdogSec semantics) and the
    /// liveness check (`[readiness] stopped_timeout`), on real `baton serve` and real workers
    /// frozen with SIGSTOP.
    @Suite("watchdog and liveness")
    struct WatchdogTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }

        static func sections(_ readiness: String) -> String {
            """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            mode = "notify"
            timeout = "20s"
            \(readiness)
            [stop]
            timeout = "2s"
            """
        }

        /// The serving worker of `slot`.
        static func serving(_ status: StatusReport, slot: Int) -> WorkerStatus? {
            status.workers.first { $0.slot == slot && $0.state == "ready" }
        }

        /// True when the process is gone (reaped by baton).
        static func gone(_ pid: Int32) -> Bool { kill(pid, 0) != 0 && errno == ESRCH }

        /// Waits (bounded) until /proc says `pid` is stopped (state T).
        static func waitUntilStopped(_ pid: Int32, timeout: Duration = .seconds(5)) -> Bool {
            let clock = ContinuousClock()
            let end = clock.now + timeout
            while clock.now < end {
                if ProcFS.read("/proc/\(pid)/stat").flatMap(ProcParsers.statFields)?.state == "T" { return true }
                pause(0.01)
            }
            return false
        }

        /// Reads one response of a keep-alive connection (up to its Content-Length) and returns
        /// its body; nil on a close or the socket's 10 s read timeout.
        static func readOneBody(_ fd: Int32) -> String? {
            var data: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let separator: [UInt8] = [13, 10, 13, 10]
            while true {
                if let end = (0..<max(0, data.count - 3)).first(where: { Array(data[$0..<$0 + 4]) == separator }) {
                    let head = String(decoding: data[..<end], as: UTF8.self).lowercased()
                    let length = head.range(of: "content-length: ").flatMap { Int(head[$0.upperBound...].prefix { $0.isNumber }) } ?? 0
                    if data.count - end - 4 >= length { return String(decoding: data[(end + 4)..<(end + 4 + length)], as: UTF8.self) }
                }
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return nil }
                data += buffer[0..<n]
            }
        }

        @Test("a SIGSTOPped worker misses its watchdog: replaced with reason watchdog, the replacement serves, the other worker (pinging) stays")
        func stoppedWorkerMissesWatchdog() throws {
            let baton = try BatonHarness(workers: 2, sections: Self.sections("watchdog = \"2s\""), tag: "wdog")
            defer { baton.stop() }
            // A keep-alive connection pinned to one worker: that one is frozen.
            let pinned = try #require(HTTP.connect(port: baton.port))
            defer { close(pinned) }
            let request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            HTTP.send(pinned, request)
            let firstBody = try #require(Self.readOneBody(pinned))
            let pinnedPID = try #require(Int32(firstBody.split(separator: " ").first?.dropFirst(4) ?? ""), "\(firstBody)")
            let before = try baton.status()
            let victim = try #require(before.workers.first { $0.pid == pinnedPID && $0.state == "ready" })
            let other = try #require(before.workers.first { $0.pid != pinnedPID && $0.state == "ready" })

            // Every worker gets the protocol variables, WATCHDOG_PID naming itself.
            let env = try #require(HTTP.get(port: baton.port, path: "/env"))
            let lines = env.body.split(separator: "\n").map(String.init)
            #expect(lines.contains("WATCHDOG_USEC=2000000"), "\(lines.filter { $0.hasPrefix("WATCHDOG") })")
            let pidLine = lines.first { $0.hasPrefix("WATCHDOG_PID=") }
            #expect([victim.pid, other.pid].map { "WATCHDOG_PID=\($0)" }.contains(pidLine ?? "none"), "\(pidLine ?? "no WATCHDOG_PID")")

            #expect(kill(victim.pid, SIGSTOP) == 0)
            // SIGSTOP takes effect asynchronously: the request must reach a frozen worker.
            #expect(Self.waitUntilStopped(victim.pid), "pid \(victim.pid) did not stop")
            HTTP.send(pinned, request)
            let missed = baton.process.waitForLine(timeout: .seconds(15)) { $0.contains("watchdog") && $0.contains("pid=\(victim.pid)") }
            #expect(missed != nil, "no watchdog line: \(baton.process.stderrLines.suffix(10))")
            // The request that waited on the frozen worker is answered: SIGCONT let it drain.
            let pinnedBody = Self.readOneBody(pinned)
            #expect(pinnedBody?.hasPrefix("pid=\(victim.pid) ") == true, "\(pinnedBody ?? "no answer")")
            let after = try #require(
                baton.waitForStatus { s in Self.serving(s, slot: victim.slot).map { $0.pid != victim.pid } ?? false },
                "slot \(victim.slot) was not replaced: \(baton.process.stderrLines.suffix(15))")
            let replacement = try #require(Self.serving(after, slot: victim.slot))
            #expect(replacement.lastRestartReason == "watchdog")
            #expect(replacement.restarts == 1)
            #expect(Self.gone(victim.pid) || kill(victim.pid, 0) != 0)
            // The other worker pinged all along: it was never replaced.
            let survivor = try #require(Self.serving(after, slot: other.slot))
            #expect(survivor.pid == other.pid)
            #expect(survivor.restarts == 0)
            // The replacement serves.
            for _ in 0..<4 {
                #expect(HTTP.get(port: baton.port, path: "/")?.status == 200)
            }
        }

        @Test("without a watchdog, a worker stopped longer than stopped_timeout is replaced with reason liveness")
        func stoppedWorkerWithoutWatchdog() throws {
            let baton = try BatonHarness(workers: 2, sections: Self.sections("stopped_timeout = \"1s\""), tag: "live")
            defer { baton.stop() }
            let before = try baton.status()
            let victim = try #require(Self.serving(before, slot: 1))
            let env = try #require(HTTP.get(port: baton.port, path: "/env"))
            #expect(!env.body.contains("WATCHDOG_"), "no watchdog asked: no WATCHDOG_* in a worker's environment")

            #expect(kill(victim.pid, SIGSTOP) == 0)
            let seen = baton.process.waitForLine(timeout: .seconds(15)) { $0.contains("liveness") && $0.contains("pid=\(victim.pid)") }
            #expect(seen != nil, "no liveness line: \(baton.process.stderrLines.suffix(10))")
            let after = try #require(
                baton.waitForStatus { s in Self.serving(s, slot: 1).map { $0.pid != victim.pid } ?? false },
                "slot 1 was not replaced: \(baton.process.stderrLines.suffix(15))")
            #expect(Self.serving(after, slot: 1)?.lastRestartReason == "liveness")
            #expect(Self.serving(after, slot: 0)?.restarts == 0)
            for _ in 0..<4 {
                #expect(HTTP.get(port: baton.port, path: "/")?.status == 200)
            }
        }

        @Test("after baton upgrade the watchdog still holds: the pinging worker stays, a stopped one is replaced")
        func watchdogAcrossUpgrade() throws {
            let baton = try BatonHarness(workers: 2, sections: Self.sections("watchdog = \"2s\"\nstopped_timeout = \"0s\""), tag: "wdup")
            defer { baton.stop() }
            let before = try baton.status()
            let upgraded = try baton.cli(["upgrade"])
            #expect(upgraded.code == 0, "\(upgraded.stderr)")
            let victim = try #require(Self.serving(before, slot: 0))
            let other = try #require(Self.serving(before, slot: 1))
            #expect(kill(victim.pid, SIGSTOP) == 0)
            let after = try #require(
                baton.waitForStatus { s in Self.serving(s, slot: 0).map { $0.pid != victim.pid } ?? false },
                "slot 0 was not replaced after the upgrade: \(baton.process.stderrLines.suffix(15))")
            #expect(Self.serving(after, slot: 0)?.lastRestartReason == "watchdog")
            #expect(Self.serving(after, slot: 1)?.pid == other.pid)
            #expect(Self.serving(after, slot: 1)?.restarts == 0)
        }

        /// The start of the Python workers below: exits 0.5 s after SIGTERM, as a real server
        /// draining does, and holds `s`, a datagram socket connected to NOTIFY_SOCKET.
        static let notifyingWorkerPreamble = """
            import os, signal, socket, time
            signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), os._exit(0)))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.connect(os.environ["NOTIFY_SOCKET"])
            """

        @Test("a deploy whose new workers fail their watchdog fails and leaves the old release serving")
        func deployFailsOnWatchdog() throws {
            let scratch = TestPaths.temporaryDirectory("wddep")
            defer { TestPaths.remove(scratch) }
            let script = scratch + "/worker.py"
            TestPaths.write(
                script,
                """
                \(Self.notifyingWorkerPreamble)
                s.send(b"READY=1\\nWATCHDOG=trigger")
                time.sleep(60)
                """)
            let baton = try BatonHarness(workers: 2, sections: Self.sections("watchdog = \"5s\""), tag: "wdde")
            defer { baton.stop() }
            let result = try baton.cli(["deploy", "--release", baton.makeRelease("r2"), "--command", "/usr/bin/python3", script])
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            #expect(result.stdout.contains("WATCHDOG=trigger: replacing it"), "\(result.stdout)")
            #expect(result.stderr.contains("rolled back") || result.stderr.contains("nothing changed"), "\(result.stderr)")
            let rolledBack = try baton.status()
            for slot in 0..<2 { #expect(Self.serving(rolledBack, slot: slot)?.release == baton.releaseDirectory, "\(rolledBack.workers)") }
            // The failed release's other worker may still be exiting (as after any rollout, a
            // stopped worker's exit is not awaited): then it goes.
            let after = try baton.waitForStatus(timeout: .seconds(10)) { $0.workers.count <= 2 } ?? baton.status()
            #expect(after.workers.count == 2)
            #expect(after.workers.allSatisfy { $0.release == baton.releaseDirectory && $0.state == "ready" }, "\(after.workers)")
        }

        @Test("a worker whose liveness probe fails liveness_failures times in a row is replaced, reason liveness-probe")
        func livenessProbe() throws {
            let scratch = TestPaths.temporaryDirectory("lprobe")
            defer { TestPaths.remove(scratch) }
            let baton = try BatonHarness(
                workers: 2,
                sections: Self.sections(
                    """
                    stopped_timeout = "0s"
                    liveness_probe = ["/bin/sh", "-c", "test ! -e \(scratch)/sick-$BATON_WORKER_PID"]
                    liveness_interval = "200ms"
                    liveness_failures = 2
                    """), tag: "lprb")
            defer { baton.stop() }
            let before = try baton.status()
            let victim = try #require(Self.serving(before, slot: 0))
            let other = try #require(Self.serving(before, slot: 1))
            TestPaths.write(scratch + "/sick-\(victim.pid)", "")
            let failed = baton.process.waitForLine(timeout: .seconds(15)) { $0.contains("liveness probe failed") && $0.contains("pid=\(victim.pid)") }
            #expect(failed != nil, "\(baton.process.stderrLines.suffix(10))")
            let after = try #require(
                baton.waitForStatus { s in Self.serving(s, slot: 0).map { $0.pid != victim.pid } ?? false },
                "slot 0 was not replaced: \(baton.process.stderrLines.suffix(15))")
            #expect(Self.serving(after, slot: 0)?.lastRestartReason == "liveness-probe")
            #expect(Self.serving(after, slot: 1)?.pid == other.pid)
            #expect(Self.serving(after, slot: 1)?.restarts == 0)
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("failed its liveness probe 2 times in a row") } != nil)
        }

        @Test("WATCHDOG=trigger replaces the worker at once, reason watchdog")
        func watchdogTrigger() throws {
            // A worker that becomes ready, then (the first one only) asks for its own replacement.
            let scratch = TestPaths.temporaryDirectory("wdtrig")
            defer { TestPaths.remove(scratch) }
            let script = scratch + "/worker.py"
            TestPaths.write(
                script,
                """
                \(Self.notifyingWorkerPreamble)
                s.send(b"READY=1")
                marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triggered")
                if not os.path.exists(marker):
                    open(marker, "w").close()
                    time.sleep(0.2)
                    s.send(b"WATCHDOG=trigger")
                while True:
                    s.send(b"WATCHDOG=1")
                    time.sleep(0.2)
                """)
            let baton = try BatonHarness(
                workers: 1, command: ["/usr/bin/python3", script], sections: Self.sections("watchdog = \"30s\""), tag: "wtrg")
            defer { baton.stop() }
            let after = try #require(
                baton.waitForStatus { s in Self.serving(s, slot: 0)?.restarts == 1 },
                "not replaced: \(baton.process.stderrLines.suffix(15))")
            #expect(Self.serving(after, slot: 0)?.lastRestartReason == "watchdog")
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("WATCHDOG=trigger") } != nil)
        }
    }
}
