import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "deploy-reservation": a host at ~90 % of its memory, a CI job's preflight, its tooling and
/// the deploy. A cgroup v1 memory cgroup of 1.2 GiB (created under the bench's own, removed
/// afterwards) holds baton with 4 slots of `gunicorn --preload -w 1` running the bench app,
/// which leaks `growKiB` per request; a load client leaks it up to 90 % of the limit, then
/// (load still running) `baton preflight --need 300MiB --roll-ahead`, then a "tooling" process in
/// the cgroup allocates 300 MiB in 2 s and holds it 4 s, then `baton deploy`. One row per run:
/// usage at preflight, the verdict, slots rolled, the headroom (limit − usage) at each step,
/// reservation rolls, OOM kills (the cgroup's `memory.oom_control` oom_kill), failed requests
/// and the exit codes. Everything else is the README's defaults. 10 runs (2 with --quick), then
/// 3 baseline runs (1) that take a plain `baton preflight --need 300MiB` verdict (no roll-ahead,
/// nothing held), record it and ignore it: the same tooling and deploy on the full host. Each row
/// also has baton's own OOM kill count (`baton status --json` "oom") next to the kernel's.
struct DeployReservation {
    let options: BenchOptions
    let limit: UInt64 = 1_288_490_189  // 1.2 GiB
    let growKiB = 16
    let appMiB = 20
    let needMiB = 300

    struct Run: Codable {
        var run: Int
        /// "preflight --roll-ahead", or "preflight ignored" (the baseline: a plain preflight's
        /// verdict is taken, then the tooling and the deploy run regardless).
        var mode: String
        var usageAtPreflightMiB: Double
        var usageAtPreflightPercent: Double
        var preflightExit: Int32
        var verdict: String
        /// The preflight's last line (its verdict with the figures).
        var preflightLine: String
        var slotsRolled: Int
        var headroomBeforePreflightMiB: Double
        var headroomAfterPreflightMiB: Double
        var minHeadroomDuringToolingMiB: Double
        var headroomBeforeDeployMiB: Double
        var minHeadroomDuringDeployMiB: Double
        var reservationRolls: Int
        var toolingExit: Int32
        var oomKills: Int
        /// OOM kills baton itself reported (`baton status --json` "oom"."kills") after the deploy.
        var batonOOMKills: Int
        var requests: Int
        var failedRequests: Int
        var deployExit: Int32
        var fillSeconds: Double
    }

    struct Result: Codable {
        var scenario = "deploy-reservation"
        var limitBytes: UInt64
        var slots: Int
        var app: String
        var growKiBPerRequest: Int
        var connections: Int
        var needMiB: Int
        var toolingMiB: Int
        var runs: [Run]
    }

    func run() throws {
        guard let own = (try? CgroupMembership.parse(ProcFS.read("/proc/self/cgroup") ?? ""))?.v1MemoryPath else {
            throw BenchError("deploy-reservation needs a cgroup v1 memory hierarchy (hybrid host); none for this process")
        }
        let base = "/sys/fs/cgroup/memory" + (own == "/" ? "" : own)
        let count = options.quick ? 2 : 10
        let baseline = options.quick ? 1 : 3
        var runs: [Run] = []
        for n in 1...(count + baseline) {
            let dir = "\(base)/baton-bench-reserve-\(getpid())-\(n)"
            guard mkdir(dir, 0o755) == 0 else { throw BenchError("mkdir \(dir): \(String(cString: strerror(errno)))") }
            defer { Self.removeCgroup(dir) }
            TestPaths.write(dir + "/memory.limit_in_bytes", "\(limit)\n")
            let row = try oneRun(n, cgroup: dir, withPreflight: n <= count)
            runs.append(row)
            writeAll(
                2,
                Array(
                    "deploy-reservation run \(n): usage \(fixed(row.usageAtPreflightPercent, 1))%, preflight \(row.preflightExit) (\(row.verdict)), rolled \(row.slotsRolled), tooling \(row.toolingExit), OOM kills \(row.oomKills), failed \(row.failedRequests), deploy \(row.deployExit)\n"
                        .utf8))
        }
        let result = Result(
            limitBytes: limit, slots: options.workers, app: "gunicorn --preload -w 1 -k gthread --threads 2, bench app \(appMiB) MiB",
            growKiBPerRequest: growKiB, connections: options.connections, needMiB: needMiB, toolingMiB: needMiB, runs: runs)
        printTable(result)
        try writeResult(result, name: "deploy-reservation", directory: options.outputDirectory)
    }

    private func oneRun(_ n: Int, cgroup dir: String, withPreflight: Bool) throws -> Run {
        let procs = dir + "/cgroup.procs"
        let env = "BENCH_BOOT_DELAY = \"0\"\nBENCH_APP_MB = \"\(appMiB)\"\nBENCH_GROW_KB = \"\(growKiB)\""
        let command = [
            Tools.python, "-m", "gunicorn", "--preload", "-w", "1", "-k", "gthread", "--threads", "2", "--graceful-timeout", "5", "benchapp:app",
        ]
        let baton = try BatonHarness(
            workers: options.workers, command: command, extraApp: "start_concurrency = \(options.workers)\n[app.environment]\n\(env)",
            sections: """
                [listen]
                addresses = ["127.0.0.1:0"]
                backlog = 1024
                [readiness]
                mode = "notify"
                timeout = "60s"
                [stop]
                timeout = "5s"
                """, waitReady: false, tag: "bench-rsv", beforeStart: { dir in try? Tools.populate(dir + "/releases/r1") },
            // baton (and so every worker) starts inside the cgroup.
            wrapper: ["/bin/sh", "-c", "echo $$ > \(procs) && exec \"$@\"", "sh"])
        defer { baton.stop() }
        guard baton.process.waitForLine(containing: "all \(options.workers) workers ready", timeout: .seconds(120)) != nil else {
            throw BenchError("baton+gunicorn did not become ready: \(baton.process.stderrLines.suffix(10).joined(separator: "\n"))")
        }
        let oomBefore = Self.oomKills(dir)
        let load = LoadClient(port: baton.port, connections: options.connections, maxDuration: .seconds(600), pace: .zero)
        // Leak up to 90 % of the limit.
        let fillStart = monotonicNow()
        while usage(dir) < limit / 10 * 9, monotonicNow() - fillStart < .seconds(300) { pause(0.05) }
        let fillSeconds = seconds(monotonicNow() - fillStart)
        let atPreflight = usage(dir)
        let headroomBefore = headroom(dir)

        // The baseline takes the verdict too (no roll-ahead, nothing held) and then ignores it, so
        // every "does not fit" it gets can be checked against the OOM kills that follow.
        let preflightArgs = ["preflight", "--need", "\(needMiB)MiB"] + (withPreflight ? ["--roll-ahead"] : []) + ["--json"]
        let preflight = try baton.startCLI(preflightArgs)
        _ = preflight.wait(timeout: .seconds(300))
        let preflightExit = preflight.exitCode ?? -1
        let last = preflight.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let reply = try? JSONDecoder().decode(ControlReply.self, from: Data(last.utf8))
        let verdict = reply?.preflight.map { $0.fits ? "fits" : "does not fit" } ?? (reply?.error ?? "no reply")
        let rolled = reply?.preflight?.rolledAhead?.count ?? 0
        let headroomAfter = headroom(dir)

        // The CI's tooling, in the same cgroup: 300 MiB touched over 2 s, held 4 s.
        let script = "import time\nb=[]\nfor i in range(10):\n    b.append(b'\\x01'*((\(needMiB)<<20)//10))\n    time.sleep(0.2)\ntime.sleep(4)\n"
        let tooling = try TestProcess(["/bin/sh", "-c", "echo $$ > \(procs) && exec \"$0\" -c \"$1\"", Tools.python, script])
        var minTooling = headroom(dir)
        while tooling.exitCode == nil {
            minTooling = min(minTooling, headroom(dir))
            pause(0.02)
        }
        let toolingExit = tooling.wait(timeout: .seconds(10)) ?? -1
        let headroomBeforeDeploy = headroom(dir)
        let rolls = (try? baton.status())?.reservation?.rolls ?? 0

        let release = baton.makeRelease("r2")
        try Tools.populate(release)
        let deploy = try baton.startCLI(["deploy", "--release", release])
        var minDeploy = headroom(dir)
        while deploy.exitCode == nil {
            minDeploy = min(minDeploy, headroom(dir))
            pause(0.02)
        }
        let deployExit = deploy.wait(timeout: .seconds(10)) ?? -1
        let report = load.stop()
        let kernelKills = Self.oomKills(dir) - oomBefore
        // baton notices a kill on its own schedule: give it a bounded while to catch up with the
        // kernel's counter before taking its figure.
        var batonKills = (try? baton.status())?.oom?.kills ?? 0
        let catchUp = monotonicNow()
        while batonKills < kernelKills, monotonicNow() - catchUp < .seconds(10) {
            pause(0.2)
            batonKills = (try? baton.status())?.oom?.kills ?? 0
        }
        let mib = { (v: Int64) in Double(v) / 1_048_576 }
        return Run(
            run: n, mode: withPreflight ? "preflight --roll-ahead" : "preflight ignored", usageAtPreflightMiB: Double(atPreflight) / 1_048_576,
            usageAtPreflightPercent: Double(atPreflight) / Double(limit) * 100, preflightExit: preflightExit, verdict: verdict,
            preflightLine: reply?.error ?? reply?.message ?? "", slotsRolled: rolled, headroomBeforePreflightMiB: mib(headroomBefore),
            headroomAfterPreflightMiB: mib(headroomAfter), minHeadroomDuringToolingMiB: mib(minTooling),
            headroomBeforeDeployMiB: mib(headroomBeforeDeploy), minHeadroomDuringDeployMiB: mib(minDeploy), reservationRolls: rolls,
            toolingExit: toolingExit, oomKills: kernelKills, batonOOMKills: batonKills, requests: report.ok + report.failed,
            failedRequests: report.failed, deployExit: deployExit, fillSeconds: fillSeconds)
    }

    private func usage(_ dir: String) -> UInt64 {
        UInt64((ProcFS.read(dir + "/memory.usage_in_bytes") ?? "0").split(separator: "\n").first ?? "0") ?? 0
    }

    /// limit − usage (page cache included: what the kernel charges).
    private func headroom(_ dir: String) -> Int64 { Int64(limit) - Int64(usage(dir)) }

    /// The cgroup's OOM kills so far (`oom_kill` in memory.oom_control).
    static func oomKills(_ dir: String) -> Int {
        for line in (ProcFS.read(dir + "/memory.oom_control") ?? "").split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.dropFirst("oom_kill ".count)) ?? 0
        }
        return 0
    }

    /// Removes the cgroup once its processes are gone (bounded wait).
    static func removeCgroup(_ dir: String) {
        for _ in 0..<200 {
            if rmdir(dir) == 0 || errno == ENOENT { return }
            pause(0.05)
        }
        writeAll(2, Array("deploy-reservation: could not remove \(dir): \(String(cString: strerror(errno)))\n".utf8))
    }

    private func printTable(_ r: Result) {
        print("")
        print(
            "deploy reservation: cgroup v1 limit \(fixed(Double(r.limitBytes) / 1_073_741_824, 1)) GiB, \(r.slots) slots of \(r.app), "
                + "\(r.growKiBPerRequest) KiB leaked per request, \(r.connections) connections; preflight --need \(r.needMiB)MiB --roll-ahead "
                + "(baseline: preflight --need \(r.needMiB)MiB, verdict ignored), tooling \(r.toolingMiB) MiB (2 s up, 4 s held), deploy")
        print(
            "| run | mode | usage at preflight | preflight | rolled | headroom MiB: before / after preflight / min tooling / before deploy / min deploy | reservation rolls | tooling exit | OOM kills: kernel / baton | failed / requests | deploy exit |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in r.runs {
            let headrooms = [
                x.headroomBeforePreflightMiB, x.headroomAfterPreflightMiB, x.minHeadroomDuringToolingMiB, x.headroomBeforeDeployMiB,
                x.minHeadroomDuringDeployMiB,
            ].map { fixed($0, 0) }.joined(separator: " / ")
            print(
                "| \(x.run) | \(x.mode) | \(fixed(x.usageAtPreflightMiB, 0)) MiB (\(fixed(x.usageAtPreflightPercent, 1)) %) | \(x.preflightExit) \(x.verdict) | \(x.slotsRolled) | \(headrooms) | \(x.reservationRolls) | \(x.toolingExit) | \(x.oomKills) / \(x.batonOOMKills) | \(x.failedRequests) / \(x.requests) | \(x.deployExit) |"
            )
        }
        for mode in ["preflight --roll-ahead", "preflight ignored"] {
            let runs = r.runs.filter { $0.mode == mode }
            let ok = runs.filter { $0.oomKills == 0 && $0.failedRequests == 0 && $0.deployExit == 0 }.count
            print("\(mode): runs with 0 OOM kills, 0 failed requests and deploy exit 0: \(ok)/\(runs.count)")
        }
        // The check on the verdicts: a "fits" is right when no OOM kill follows, an
        // ignored "does not fit" is right when one does.
        let fits = r.runs.filter { $0.verdict == "fits" }
        let ignored = r.runs.filter { $0.mode == "preflight ignored" && $0.verdict == "does not fit" }
        print("fits → no OOM kill: \(fits.filter { $0.oomKills == 0 }.count)/\(fits.count)")
        print("ignored does-not-fit → OOM kill: \(ignored.filter { $0.oomKills > 0 }.count)/\(ignored.count)")
        let other = r.runs.filter { $0.verdict != "fits" && $0.verdict != "does not fit" }.count
        if other > 0 { print("runs without a verdict (error or no reply): \(other)") }
    }
}
