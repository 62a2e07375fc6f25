import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension ThirdIntegration {
    /// `baton upgrade`: execve in place, same PID, workers keep serving.
    @Suite("baton upgrade")
    struct UpgradeTests {
        @Test("upgrade under load: 0 failed requests, same baton pid, worker pids unchanged; a bad binary changes nothing")
        func upgradeInPlace() throws {
            let directory = TestPaths.temporaryDirectory("upg")
            defer { TestPaths.remove(directory) }
            let recorder = try NotifyRecorder(path: directory + "/notify.sock")
            defer { recorder.close() }
            let baton = try BatonHarness(
                workers: 3, sections: BatonHarness.defaultSections + "\n[metrics]\naddress = \"127.0.0.1:0\"",
                environment: ["NOTIFY_SOCKET": recorder.path], tag: "upg")
            defer { baton.stop() }
            let before = try baton.status()
            let metricsPort = try #require(baton.metricsPort())
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(60))
            #expect(load.waitForProgress(200))
            let marker = recorder.all.count

            let upgraded = try baton.cli(["upgrade"])
            #expect(upgraded.code == 0, "\(upgraded.stderr)")
            #expect(upgraded.stdout.contains("check passed"))
            #expect(upgraded.stdout.contains("upgrade finished: pid \(before.pid)"))
            // A soak audit: the metrics socket was closed and bound again after the reply (scrapes
            // refused meanwhile; a port taken in the gap ended the new image). It crosses the
            // execve as the listening sockets do: the same port (0 in the config) answers.
            #expect(HTTP.get(port: metricsPort, path: "/metrics")?.status == 200)
            // The check's own "ok" line is a person's; in baton's output it was a bare line.
            #expect(!(baton.process.stdout + baton.process.stderrLines.joined(separator: "\n")).contains("upgrade check: ok"))
            #expect(load.waitForProgress(200))
            let after = try baton.status()
            #expect(after.pid == before.pid)
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
            #expect(after.workers.allSatisfy { $0.state == "ready" })
            let reloading = recorder.waitFor(line: "RELOADING=1", after: marker, timeout: .seconds(10))
            #expect(reloading != nil)
            #expect(recorder.waitFor(line: "READY=1", after: (reloading ?? marker) + 1, timeout: .seconds(10)) != nil)

            let refused = try baton.cli(["upgrade", "--binary", "/bin/false"])
            #expect(refused.code == 1)
            #expect(refused.stderr.contains("upgrade refused"), "\(refused.stderr)")
            #expect(try baton.status().workers.map(\.pid) == before.workers.map(\.pid))

            // The new image supervises for real: a crash is replaced, a deploy runs.
            let victim = before.workers[0].pid
            #expect(kill(victim, SIGKILL) == 0)
            #expect(
                baton.process.waitForLine(timeout: .seconds(20)) { $0.contains("worker ready") && $0.contains("slot=0") && !$0.contains("pid=\(victim)") }
                    != nil)
            let deployed = try baton.cli(["deploy", "--release", baton.makeRelease("r2")])
            #expect(deployed.code == 0, "\(deployed.stderr)")
            let report = load.stop()
            print("upgrade under load: \(report)")
            #expect(report.failed == 0, "\(report)")
            #expect(baton.process.signal(SIGTERM) == ())
            #expect(baton.process.wait(timeout: .seconds(30)) == 0)
        }

        /// A policy audit: under steady recycling (max_requests under load) 11 of 11 upgrades
        /// were refused, "a policy is in progress". An upgrade now waits for the recycle running
        /// (up to its --timeout), and no recycle starts meanwhile.
        @Test("an upgrade asked while a policy restart runs waits for it, then runs")
        func upgradeWaitsForAPolicyRestart() throws {
            // Each recycle boots a worker for 3 s: one seen less than a second old still runs
            // when the upgrade's request comes.
            let baton = try BatonHarness(
                workers: 2, command: [TestPaths.executable("baton-demo-worker"), "--boot-delay", "3"],
                sections: BatonHarness.defaultSections + "\n[rolling]\nmax_age = \"1s\"\n", tag: "upg-pol")
            defer { baton.stop() }
            let running = baton.waitForStatus(timeout: .seconds(60)) { $0.operation?.kind == "policy" && ($0.operation?.elapsed ?? 9) < 1 }
            let before = try #require(running, "a policy restart under way")
            let upgraded = try baton.cli(["upgrade"], timeout: .seconds(90))
            #expect(upgraded.code == 0, "\(upgraded.stdout)\n\(upgraded.stderr)")
            #expect(upgraded.stdout.contains("waiting: a policy restart is in progress; the upgrade runs after it"), "\(upgraded.stdout)")
            #expect(upgraded.stdout.contains("upgrade finished: pid \(before.pid)"), "\(upgraded.stdout)")
            #expect(baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("upgrade: resumed 2 workers") } != nil)
        }

        /// A policy audit: the new image measured each worker's growth afresh, from its size
        /// after the upgrade, and the memory-threshold rule passed over workers that had grown
        /// (52 % against a 40 % line, for minutes).
        @Test("upgrade carries each worker's USS at ready over: the memory rules measure its growth from the same point")
        func upgradeKeepsTheWorkersMemoryBaseline() throws {
            let baton = try BatonHarness(
                workers: 1, command: [TestPaths.executable("baton-demo-worker"), "--grow-per-request", "256K"],
                sections: BatonHarness.defaultSections + "\n[memory]\ncheck_interval = \"1s\"\nsmaps_every = 1\n", tag: "upg-mem")
            defer { baton.stop() }
            let measured = try #require(baton.waitForStatus(timeout: .seconds(20)) { $0.workers.first?.ussAtReadyBytes != nil })
            let baseline = try #require(measured.workers.first?.ussAtReadyBytes)
            for _ in 0..<80 { _ = HTTP.get(port: baton.port, path: "/") }
            let grown = baton.waitForStatus(timeout: .seconds(20)) { ($0.workers.first?.ussBytes ?? 0) > baseline + (10 << 20) }
            #expect(grown != nil, "20 MiB leaked")
            let upgraded = try baton.cli(["upgrade"])
            #expect(upgraded.code == 0, "\(upgraded.stderr)")
            let after = try #require(baton.waitForStatus(timeout: .seconds(20)) { $0.workers.first?.ussBytes != nil })
            #expect(after.workers.first?.pid == measured.workers.first?.pid)
            #expect(after.workers.first?.ussAtReadyBytes == baseline, "\(String(describing: after.workers.first))")
        }
    }
}
