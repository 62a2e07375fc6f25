import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension ThirdIntegration {
    /// What operators coming from gunicorn, puma or systemd do, and what CPU limits they run
    /// baton under: commands behind a shell without `exec`, apps that serve elsewhere, a second
    /// stop signal, CPU affinity and nice. In the third chain, which had room for them.
    @Suite("operators' habits and CPU limits")
    struct OperatorHabitsTests {
        /// One worker: a shell that runs the demo worker (with `arguments`) without `exec`, the
        /// app given its own LISTEN_PID (as a wrapper that sets it does; apps that do not check
        /// it need none); and a 3 s request the app took.
        static func behindAShell(_ arguments: String, tag: String) throws -> (baton: BatonHarness, app: pid_t, client: Int32) {
            // In the harness's folder, which its stop removes.
            let directory = TestPaths.temporaryDirectory(tag)
            let script = directory + "/run.sh"
            TestPaths.write(
                script, "#!/bin/sh\nsh -c 'LISTEN_PID=$$ exec \"$0\"\(arguments)' \(TestPaths.executable("baton-demo-worker")) &\nwait $!\nexit $?\n",
                mode: 0o755)
            let running = try BatonHarness(workers: 1, command: [script], tag: tag, reuse: directory)
            let shell = try #require(try running.status().workers.first?.pid)
            let app = try #require(ProcFS.children(of: shell).first)
            let client = try #require(HTTP.slowRequestInFlight(port: running.port, server: app, milliseconds: 3000))
            return (running, app, client)
        }

        @Test("a worker behind a shell without exec drains: its group is waited for, the request in flight is answered")
        func aShellWithoutExecDrains() throws {
            let (baton, _, client) = try Self.behindAShell("", tag: "noexec")
            defer {
                close(client)
                baton.stop()
            }
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            #expect(HTTP.readResponse(client)?.status == 200, "\(baton.process.stderrLines.suffix(8))")
            #expect(baton.process.waitForLine(containing: "waiting for the rest of its group", timeout: .seconds(10)) != nil)
        }

        /// A re-audit: in `app | cat` cat died of SIGTERM and the app of a broken pipe, 4 of 6
        /// requests failed, and baton said "drained in 110ms" (the shell's exit, by the stop
        /// signal, was all it judged).
        @Test("a process of the worker's group that does not end its drain cleanly makes it no clean drain")
        func aGroupMembersFailedDrainIsSaid() throws {
            // The app gives up its drain after 0.5 s (exit 1) with a 3 s request in flight.
            let (baton, app, client) = try Self.behindAShell(" --drain-timeout 0.5", tag: "noexecf")
            defer {
                close(client)
                baton.stop()
            }
            let reload = try baton.cli(["reload"])
            let said = reload.stdout + reload.stderr
            #expect(
                said.contains("but its group's pid \(app) ended with exit code 1 while it drained: not a clean drain"),
                "\(said) \(baton.process.stderrLines.suffix(20))")
        }

        /// A re-audit: a helper of the wrapper that ignores SIGTERM held the drain to the stop
        /// timeout, and baton said "worker still running" of a pid gone since the stop signal,
        /// and "requests in flight were cut" of an app that had drained.
        @Test("a drain held by the rest of the worker's group names what was left at the stop timeout")
        func aDrainHeldByAHelperNamesIt() throws {
            let scripts = TestPaths.temporaryDirectory("noexec-helper")
            defer { TestPaths.remove(scripts) }
            TestPaths.write(
                scripts + "/run.sh",
                "#!/bin/sh\n(trap '' TERM; exec sleep 300) &\nsh -c 'LISTEN_PID=$$ exec \"$0\"' \(TestPaths.executable("baton-demo-worker")) &\nwait $!\nexit $?\n",
                mode: 0o755)
            let sections = BatonHarness.defaultSections.replacingOccurrences("timeout = \"10s\"", with: "timeout = \"2s\"")
            let baton = try BatonHarness(workers: 1, command: [scripts + "/run.sh"], sections: sections, tag: "noexech")
            defer { baton.stop() }
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            let said = reload.stdout + reload.stderr
            #expect(said.contains("exited, and the rest of its group (pid ") && said.contains(" sleep) was still running 2s after SIGTERM"), "\(said)")
            #expect(said.contains("(requests in flight may have been cut)"), "\(said)")
        }

        /// A habits audit: an app serving on a port of its own (Node's `listen(PORT)`, gunicorn
        /// behind a shell without `exec`) said READY=1: status `3/3 workers ready`, `deploy
        /// finished` exit 0, while every connection to baton's port waited unaccepted.
        @Test("connections left in the accept queue while workers are ready are said, and shown in status")
        func connectionsNoWorkerAccepts() throws {
            let scripts = TestPaths.temporaryDirectory("noaccept")
            defer { TestPaths.remove(scripts) }
            // Ready by its word, and never accepts (it would serve elsewhere).
            TestPaths.write(
                scripts + "/ready.py",
                "import os, signal, socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\nsignal.pause()\n"
            )
            let baton = try BatonHarness(workers: 1, command: ["/usr/bin/python3", scripts + "/ready.py"], tag: "noacc")
            defer { baton.stop() }
            let client = try #require(HTTP.connect(port: baton.port))
            defer { close(client) }
            let line = baton.process.waitForLine(containing: "connections have waited in its accept queue", timeout: .seconds(20))
            #expect(
                line?.contains("listening socket 127.0.0.1:\(baton.port): ") == true && line?.contains("while 1 worker is ready") == true,
                "\(String(describing: line))")
            let problems = try baton.status().problems ?? []
            #expect(problems.contains { $0.contains("none accepts them, or they do not keep up") }, "\(problems)")
        }

        /// A CPU audit: under `taskset -c 0` baton planned its boots for the host's CPUs.
        @Test("under a CPU affinity of one CPU, boots are planned for one", .enabled(if: CPUCount.online >= 2))
        func bootsArePlannedForTheCPUsBatonMayUse() throws {
            let baton = try BatonHarness(workers: 2, tag: "cpu1", wrapper: ["/usr/bin/taskset", "-c", "0"])
            defer { baton.stop() }
            #expect(
                baton.process.stderrLines.contains { $0.contains("boots are planned for 1 of the host's \(CPUCount.online) CPUs (CPU affinity 1") },
                "\(baton.process.stderrLines.prefix(6))")
            let plan = try baton.cli(["deploy", "--dry-run", "--release", baton.makeRelease("r2")])
            // The demo worker's boots take next to no CPU: the most per CPU, for one CPU (32 for two).
            #expect(plan.stdout.contains(" \(BootBudget.maxPerCPU) boots at once)"), "\(plan.stdout)")
        }

        /// A review of the CPU audit's fix: the boot budget kept the CPUs read at start, while
        /// the recycling budget read them again at every look; a quota or affinity changed on a
        /// running baton (`systemctl set-property … CPUQuota=`) never reached a deploy's plan.
        @Test("a CPU affinity changed while baton runs reaches the next deploy's plan", .enabled(if: CPUCount.online >= 2))
        func aChangedAffinityIsFollowed() throws {
            let baton = try BatonHarness(workers: 2, tag: "cpu-follow", wrapper: ["/usr/bin/taskset", "-c", "0"])
            defer { baton.stop() }
            let release = try baton.makeRelease("r2")
            let one = try baton.cli(["deploy", "--dry-run", "--release", release])
            #expect(one.stdout.contains(" \(BootBudget.maxPerCPU) boots at once)"), "\(one.stdout)")
            let all = (0..<CPUCount.online).map(String.init).joined(separator: ",")
            let set = try TestProcess.run(["/usr/bin/taskset", "-a", "-p", "-c", all, "\(baton.process.pid)"])
            #expect(set.code == 0, "\(set.stderr)")
            let plan = try baton.cli(["deploy", "--dry-run", "--release", release])
            #expect(plan.stdout.contains(" \(BootBudget.maxPerCPU * CPUCount.online) boots at once)"), "\(plan.stdout)")
            let line = baton.process.waitForLine(containing: "baton may use \(CPUCount.online) CPUs now (1 before)", timeout: .seconds(10))
            #expect(line != nil, "\(baton.process.stderrLines.suffix(6))")
        }

        /// A CPU audit: under `nice -n 19` boot_nice did nothing, and the log said "baton's
        /// priority back" of a priority never lowered.
        @Test("boot_nice under nice 19 says it has no effect")
        func bootNiceAtTheLowestPriority() throws {
            let sections = BatonHarness.defaultSections.replacingOccurrences("[readiness]\n", with: "[readiness]\nboot_nice = 10\n")
            let baton = try BatonHarness(workers: 1, sections: sections, tag: "nice19", wrapper: ["/usr/bin/nice", "-n", "19"])
            defer { baton.stop() }
            #expect(
                baton.process.stderrLines.contains { $0.contains("readiness.boot_nice = 10 ignored: baton runs at nice 19, the lowest priority already") },
                "\(baton.process.stderrLines.prefix(6))")
        }

        /// A habits audit: a second Ctrl-C (or SIGTERM) during a stop logged "received SIGINT:
        /// stopping" again, as if it did something.
        @Test("a stop signal during a stop says the stop is under way and what it waits for")
        func aSecondStopSignalSaysTheStopIsUnderWay() throws {
            let baton = try BatonHarness(workers: 1, tag: "sig2")
            defer { baton.stop() }
            let worker = try #require(try baton.status().workers.first?.pid)
            // In flight: the app took the connection (a 3 s request to drain).
            let client = try #require(HTTP.slowRequestInFlight(port: baton.port, server: worker, milliseconds: 3000))
            defer { close(client) }
            baton.process.signal(SIGTERM)
            #expect(baton.process.waitForLine(containing: "received SIGTERM: stopping", timeout: .seconds(10)) != nil)
            baton.process.signal(SIGINT)
            let again = baton.process.waitForLine(containing: "received SIGINT: already stopping, ", timeout: .seconds(10))
            #expect(again?.contains("1 worker draining (SIGKILL after [stop] timeout 10s from each one's stop)") == true, "\(String(describing: again))")
            #expect(baton.process.wait(timeout: .seconds(30)) == 0)
        }

    }
}
