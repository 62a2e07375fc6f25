import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// Start-ups that fail end, and never hold an operator's deploy hostage: a failing
    /// start-up is bounded by `[app] start_attempts`, a deploy pre-empts it, and a client's
    /// `--timeout` counts from its request.
    @Suite("start-up")
    struct StartUpTests {
        static let worker = TestPaths.executable("baton-demo-worker")

        @Test("a start-up that keeps failing ends: baton exits 1 after [app] start_attempts failures of a slot")
        func startAttemptsBound() throws {
            let baton = try BatonHarness(
                workers: 1, command: [Self.worker, "--fail-boot"], extraApp: "start_attempts = 2", waitReady: false, tag: "satt")
            defer { baton.stop() }
            let code = baton.process.wait(timeout: .seconds(30))
            #expect(code == 1, "\(baton.process.stderrLines.suffix(10))")
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("start-up failed: slot 0 failed 2 starts in a row") } != nil)
            // Its stop runs once (a docs audit: `INFO stopped` twice, so the history written twice).
            let stopped = baton.process.stderrLines.filter { $0.contains(" INFO stopped") }
            #expect(stopped.count == 1, "\(baton.process.stderrLines.suffix(10))")
        }

        @Test("a deploy of a good release pre-empts a crash-looping start-up: exit 0, every slot serves it, READY after")
        func deployPreemptsFailingStartUp() throws {
            let directory = TestPaths.temporaryDirectory("pree")
            let recorder = try NotifyRecorder(path: directory + "/notify.sock")
            defer { recorder.close() }
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--fail-boot"], environment: ["NOTIFY_SOCKET": recorder.path], waitReady: false,
                tag: "pree", reuse: directory)
            defer { baton.stop() }
            #expect(baton.process.waitForLine(containing: "restarts in", timeout: .seconds(20)) != nil)
            let release = baton.makeRelease("good")
            let client = try baton.startCLI(["deploy", "--release", release, "--command", Self.worker])
            let code = client.wait(timeout: .seconds(30))
            if code == nil { client.signal(SIGKILL) }
            _ = client.wait(timeout: .seconds(5))
            #expect(code == 0, "\(client.stdout)\n\(baton.process.stderrLines.suffix(10))")
            #expect(client.stdout.contains("deploy finished: 2 workers on \(release)"), "\(client.stdout)")
            #expect(baton.process.waitForLine(containing: "all 2 workers ready", timeout: .seconds(10)) != nil)
            // READY=1 only once every slot serves: after the deploy, never during the failing start-up.
            let ready = try #require(recorder.waitFor(line: "READY=1", timeout: .seconds(10)))
            #expect(recorder.all[ready].text.contains("STATUS=2/2 workers ready, release \(release)"), "\(recorder.all[ready].text)")
            let status = try baton.status()
            #expect(status.release == release)
            #expect(status.workers.allSatisfy { $0.release == release && $0.state == "ready" }, "\(status.workers)")
        }

        @Test("a pre-empting deploy that fails leaves no slot without a worker: slots it took from the start queue are started")
        func failedPreemptionRefillsSlots() throws {
            let directory = TestPaths.temporaryDirectory("prfl")
            // Slot 0 fails at once, slot 1 boots for long (holding the only start), slot 2 waits in the start queue.
            // Slot 1's 3 s need only outlast the deploy's start (a CLI call after baton's first log
            // lines); slot 2 then starts once slot 1 is ready, so the test waits the whole boot.
            let script = directory + "/slots.sh"
            TestPaths.write(
                script,
                "#!/bin/sh\ncase \"$BATON_SLOT\" in\n0) exec \(Self.worker) --fail-boot ;;\n1) exec \(Self.worker) --boot-delay 3 ;;\n*) exec \(Self.worker) ;;\nesac\n",
                mode: 0o755)
            let baton = try BatonHarness(
                workers: 3, command: [script], extraApp: "start_concurrency = 1", waitReady: false, tag: "prfl", reuse: directory)
            defer { baton.stop() }
            #expect(baton.process.waitForLine(containing: "slot 0 restarts in", timeout: .seconds(20)) != nil)
            let bad = try baton.cli(["deploy", "--release", baton.makeRelease("bad"), "--command", Self.worker, "--fail-boot"])
            #expect(bad.code == 1, "\(bad.stdout)\n\(bad.stderr)")
            let started = baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("worker started") && $0.contains("slot=2") }
            #expect(started != nil, "\(baton.process.stderrLines.suffix(10))")
        }
    }
}
