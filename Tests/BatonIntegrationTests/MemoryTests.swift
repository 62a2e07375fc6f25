import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension MemoryIntegration {
    /// Memory under real processes: the threshold policy, preflight, roll-ahead,
    /// deploys that do not fit, and a budget taken from a real cgroup limit.
    @Suite("memory")
    struct MemoryTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }

        static func sections(_ memory: String, deploy: String = "") -> String {
            """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            timeout = "20s"
            [memory]
            \(memory)
            [deploy]
            \(deploy)
            """
        }

        func preflight(_ baton: BatonHarness, _ args: [String] = []) throws -> (CommandResult, PreflightReport?) {
            let result = try baton.cli(["preflight", "--json"] + args)
            let last = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
            let reply = try? JSONDecoder().decode(ControlReply.self, from: Data(last.utf8))
            return (result, reply?.preflight)
        }

        @Test("the threshold policy replaces the largest worker under load, with 0 failed requests")
        func thresholdPolicyUnderLoad() throws {
            // Each worker holds 32 MiB from its start, under the line (40 % of 300 MiB) while
            // fresh: their growth under load takes the total past it. Which of the total's rules
            // picks first, the threshold or leak-prediction (which recycles before the line when
            // it sees the leak coming), depends on the machine's speed: either is the policy on
            // the total. (Workers over the line while fresh are restarted by neither: a policy
            // audit, RestartPolicy's memory-outside-the-workers rule.)
            let baton = try BatonHarness(
                workers: 3, command: [Self.worker, "--hold", "32", "--grow-per-request", "8K"],
                sections: Self.sections(
                    """
                    budget = "300MiB"
                    threshold = "40%"
                    check_interval = "300ms"
                    min_worker_age = "1s"
                    smaps_every = 1
                    """), tag: "thr")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(60))
            let reasons = ["memory-threshold", "leak-prediction"]
            let fired = baton.process.waitForLine(timeout: .seconds(40)) { line in
                line.contains("restart policy:") && reasons.contains { line.contains("reason=\($0)") }
            }
            #expect(fired != nil, "\(baton.process.stderrLines.suffix(10))")
            let slot = fired.flatMap { $0.split(separator: " ").last { $0.hasPrefix("slot=") } }.map { String($0.dropFirst(5)) } ?? "?"
            let reason = reasons.first { fired?.contains("reason=\($0)") == true } ?? "?"
            // This recycle's own end: an earlier operation's "policy finished" is no sign of it.
            let done = baton.process.waitForLine(timeout: .seconds(30)) {
                $0.contains("recycle of slot \(slot) done") && $0.contains("reason=\(reason)")
            }
            #expect(done != nil, "\(baton.process.stderrLines.suffix(10))")
            // At once: the new worker is younger than min_worker_age, so no rule picks it yet.
            let status = try baton.status()
            #expect(status.workers.contains { "\($0.slot)" == slot && $0.lastRestartReason?.text == reason }, "\(status.workers)")
            #expect(load.waitForProgress(200))
            let report = load.stop()
            print("threshold policy under load: \(report); \(fired ?? "")")
            #expect(report.failed == 0, "\(report)")
            // The operation is written to history when it finished (after the stability window).
            #expect(baton.process.waitForLine(containing: "policy finished", timeout: .seconds(30)) != nil)
            let history = try baton.cli(["history"])
            #expect(history.stdout.contains("policy"))
        }

        @Test("preflight under a constrained budget says no with the figures; --roll-ahead reclaims memory and then says yes")
        func preflightAndRollAhead() throws {
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--hold", "10", "--grow-per-request", "1M"],
                sections: Self.sections(
                    "budget = \"100MiB\"\ncheck_interval = \"1h\"\nreservation_margin = \"0B\"", deploy: "strategy = \"replace\""), tag: "pre")
            defer { baton.stop() }
            let (ok, fits) = try preflight(baton, ["--need", "40MiB"])
            #expect(ok.code == 0, "\(ok.stdout)\(ok.stderr)")
            let before = try #require(fits)
            #expect(before.fits)
            #expect(before.budgetBytes == 100 << 20)
            #expect(before.budgetSource == "configured")
            // The workers leak 1 MiB a request: about 50 MiB more in total.
            for _ in 0..<50 { #expect(HTTP.get(port: baton.port, path: "/")?.status == 200) }
            let (no, grown) = try preflight(baton, ["--need", "40MiB"])
            #expect(no.code == 1)
            let verdict = try #require(grown)
            #expect(!verdict.fits)
            #expect(verdict.summary.hasPrefix("does not fit: need 40.0 MiB"), "\(verdict.summary)")
            #expect(verdict.binding == "memory.budget")
            // have = budget − the workers' PSS, as measured.
            let pss = verdict.workersPSSBytes
            #expect(verdict.haveBytes == Int64(100 << 20) - Int64(pss))
            #expect(pss > 60 << 20)

            // No margin, a 1 s hold: the growth planned for is small beside this 100 MiB budget.
            let rolled = try baton.cli(["preflight", "--need", "40MiB", "--roll-ahead", "--hold", "1s"])
            #expect(rolled.code == 0, "\(rolled.stdout)\n\(rolled.stderr)")
            #expect(rolled.stdout.contains("roll-ahead:"))
            #expect(rolled.stdout.contains("after restarting slot"))
            #expect(rolled.stdout.contains("fits: need 40.0 MiB"))
            #expect(try baton.status().workers.contains { $0.lastRestartReason == "roll-ahead" })
        }

        @Test("a deploy that does not fit a surge runs with the replace strategy and 0 failed requests")
        func deployFallsBackToReplace() throws {
            let baton = try BatonHarness(
                workers: 3, command: [Self.worker, "--hold", "20"],
                sections: Self.sections("budget = \"70MiB\"\ncheck_interval = \"1h\""), tag: "rpl")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(60))
            #expect(load.waitForProgress(100))
            let result = try baton.cli(["deploy", "--release", baton.makeRelease("r2")])
            #expect(load.waitForProgress(100))
            let report = load.stop()
            print("deploy that does not fit: \(report)")
            #expect(result.code == 0, "\(result.stderr)")
            #expect(result.stdout.contains("replace, 1 slot at once (auto: a surge of one does not fit: need"), "\(result.stdout)")
            #expect(result.stdout.contains("draining pid"))
            #expect(report.failed == 0, "\(report)")
            #expect(try baton.status().workers.allSatisfy { $0.release.hasSuffix("/r2") })
        }

        @Test("under a real cgroup memory limit, the budget comes from the cgroup")
        func budgetFromCgroup() throws {
            // This host has the memory controller on cgroup v1 (hybrid); on a
            // pure v2 host the v2 directory is used.
            let v1 = "/sys/fs/cgroup/memory"
            let v2 = "/sys/fs/cgroup"
            let useV1 = access(v1 + "/cgroup.procs", W_OK) == 0
            let useV2 = !useV1 && (ProcFS.read(v2 + "/cgroup.controllers")?.contains("memory") ?? false)
            guard useV1 || useV2 else {
                print("skipped: no writable memory cgroup hierarchy here")
                return
            }
            let group = (useV1 ? v1 : v2) + "/baton-test-\(getpid())"
            #expect(mkdir(group, 0o755) == 0)
            defer { rmdir(group) }
            let limit: UInt64 = 256 << 20
            TestPaths.write(group + (useV1 ? "/memory.limit_in_bytes" : "/memory.max"), "\(limit)\n")
            // baton enters the cgroup before exec: v1 does not move existing charges.
            let wrapper = TestPaths.temporaryDirectory("cgw") + "/enter.sh"
            TestPaths.write(wrapper, "#!/bin/sh\necho $$ > \(group)/cgroup.procs\nexec \"$@\"\n", mode: 0o755)
            let baton = try BatonHarness(workers: 2, tag: "cg", wrapper: [wrapper])
            defer {
                baton.stop()
                TestPaths.remove(String(wrapper.dropLast("/enter.sh".count)))
            }
            let (result, report) = try preflight(baton)
            #expect(result.code == 0)
            let figures = try #require(report)
            #expect(figures.budgetSource == "cgroup")
            #expect(figures.budgetBytes == limit)
            #expect(figures.limits.contains { $0.kind.hasPrefix("cgroup memory") })
        }
    }
}

extension MemoryIntegration.MemoryTests {
    @Test("the Prometheus endpoint serves per-worker memory, restarts by reason, deploys by outcome and headroom")
    func metricsEndpoint() throws {
        let baton = try BatonHarness(
            workers: 2,
            sections: Self.sections("check_interval = \"200ms\"\nsmaps_every = 1") + "\n[metrics]\naddress = \"127.0.0.1:0\"", tag: "prom")
        defer { baton.stop() }
        let port = try #require(baton.metricsPort())
        #expect(try baton.cli(["deploy", "--release", baton.makeRelease("r2")]).code == 0)
        let reply = try #require(HTTP.get(port: port, path: "/metrics"))
        #expect(reply.status == 200)
        #expect(reply.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let lines = reply.body.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("baton_worker_rss_bytes{") && $0.contains("slot=\"0\"") && $0.contains("pid=\"") })
        #expect(lines.contains { $0.hasPrefix("baton_worker_uss_bytes{") && $0.contains("slot=\"1\"") })
        #expect(reply.body.contains("baton_restarts_total{reason=\"deploy\"} 2"))
        #expect(reply.body.contains("baton_deploys_total{outcome=\"succeeded\"} 1"))
        #expect(reply.body.contains("# TYPE baton_restarts_total counter"))
        #expect(reply.body.contains("baton_memory_headroom_bytes{binding=\"host MemAvailable\"}"))
        #expect(HTTP.get(port: port, path: "/nope")?.status == 404)

        // A scrape's 5 s timeout belongs to its connection: it must not close a later
        // scrape that got the same descriptor (the next accept reuses the lowest free one).
        let first = try #require(HTTP.connect(port: port))
        close(first)
        pause(2.5)  // what is tested here is a timeout: wait it out
        let second = try #require(HTTP.connect(port: port))
        defer { close(second) }
        HTTP.send(second, "GET /metrics HTTP/1.0\r\n")
        pause(3.5)  // past the first connection's 5 s, within the second's
        HTTP.send(second, "\r\n")
        #expect(HTTP.readResponse(second)?.status == 200)
    }
}
