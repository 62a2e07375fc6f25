import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "deploy memory": peak memory during a deploy vs the steady state, per strategy. baton with
/// N demo workers holding `holdMiB` each (`--hold`, private), K keep-alive clients, then deploys
/// with strategy surge, replace and auto, one after another; a second baton with a configured
/// `[memory] budget` of the steady PSS plus half a worker, where `auto` must choose replace.
/// Every ~50 ms: total PSS over baton's worker trees (smaps_rollup, the real reader), the
/// number of live workers, and the host's MemAvailable (a host-wide figure: other processes
/// move it too).
struct DeployMemory {
    let options: BenchOptions
    let holdMiB = 50
    let interval = 0.05

    struct DeployResult: Codable {
        var baton: String
        var requested: String
        /// What baton said it used ("surge (requested)", "replace (auto: ...)").
        var used: String
        var exitCode: Int32
        var durationSeconds: Double
        var steadyPSSMiB: Double
        var peakPSSMiB: Double
        var peakOverSteady: Double
        var extraPSSMiB: Double
        var steadyMemAvailableMiB: Double
        var minMemAvailableMiB: Double
        var memAvailableDropMiB: Double
        var peakExtraWorkers: Int
        /// baton's children 0.5 s after the deploy returned (N unless a worker was leaked).
        var workersAfter: Int
        var samplesSteady: Int
        var samplesDuringDeploy: Int
    }

    struct Result: Codable {
        var scenario = "deploy-memory"
        var workers: Int
        var holdMiBPerWorker: Int
        var bootDelaySeconds: Double
        var connections: Int
        var sampleIntervalMs: Double
        var tightBudgetMiB: Double
        var deploys: [DeployResult]
        var totalRequests: Int
        var failedRequests: Int
        var failures: [String: Int]
    }

    /// One sample of baton's workers and the host.
    struct Sample {
        var pss: UInt64
        var workers: Int
        var memAvailable: UInt64
    }

    func run() throws {
        let command = [TestPaths.executable("baton-demo-worker"), "--boot-delay", String(options.bootDelay), "--hold", String(holdMiB)]
        var deploys: [DeployResult] = []
        var reports: [LoadClient.Report] = []
        // First baton: no configured budget (the host's MemTotal; surge fits).
        do {
            let baton = try BatonHarness(workers: options.workers, command: command, extraApp: "start_concurrency = \(options.workers)", tag: "bench")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: options.connections, maxDuration: .seconds(600), pace: .zero)
            for (n, strategy) in ["surge", "replace", "auto"].enumerated() {
                deploys.append(try deploy(baton, label: "default budget", strategy: strategy, release: "r\(n + 2)"))
            }
            reports.append(load.stop())
        }
        // Second baton: a budget only half a worker above the steady PSS, so auto picks replace.
        let steady = deploys.map(\.steadyPSSMiB).sorted()[deploys.count / 2]
        let tight = (steady + steady / Double(options.workers) / 2).rounded()
        do {
            // A [memory] table after the [app] keys (the harness's default sections follow).
            let memory = """
                start_concurrency = \(options.workers)
                [memory]
                budget = "\(Int(tight))MiB"
                threshold = "99%"
                """
            let baton = try BatonHarness(workers: options.workers, command: command, extraApp: memory, tag: "bench")
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: options.connections, maxDuration: .seconds(600), pace: .zero)
            deploys.append(try deploy(baton, label: "budget \(Int(tight)) MiB", strategy: "auto", release: "r2"))
            reports.append(load.stop())
        }
        var failures: [String: Int] = [:]
        for report in reports { failures.merge(report.failures, uniquingKeysWith: +) }
        let result = Result(
            workers: options.workers, holdMiBPerWorker: holdMiB, bootDelaySeconds: options.bootDelay, connections: options.connections,
            sampleIntervalMs: interval * 1000, tightBudgetMiB: tight, deploys: deploys,
            totalRequests: reports.map { $0.ok + $0.failed }.reduce(0, +), failedRequests: reports.map(\.failed).reduce(0, +), failures: failures)
        printTable(result)
        try writeResult(result, name: "deploy-memory", directory: options.outputDirectory)
    }

    /// A steady window of samples, then one deploy sampled until the CLI exits.
    private func deploy(_ baton: BatonHarness, label: String, strategy: String, release: String) throws -> DeployResult {
        let pid = baton.process.pid
        var steady: [Sample] = []
        let steadyEnd = monotonicNow() + .milliseconds(Int64(options.steadySeconds * 1000))
        while monotonicNow() < steadyEnd {
            steady.append(sample(baton: pid))
            pause(interval)
        }
        let directory = baton.makeRelease(release)
        let start = monotonicNow()
        let cli = try baton.startCLI(["deploy", "--release", directory, "--strategy", strategy])
        var during: [Sample] = []
        while cli.exitCode == nil {
            during.append(sample(baton: pid))
            pause(interval)
        }
        let duration = seconds(monotonicNow() - start)
        let code = cli.wait(timeout: .seconds(10)) ?? -1
        pause(0.5)
        let after = ProcFS.children(of: pid).count
        let used = Self.strategyLine(cli.stdout + "\n" + cli.stderrLines.joined(separator: "\n"), workers: options.workers)
        let mib = { (bytes: UInt64) in Double(bytes) / 1_048_576 }
        let steadyPSS = median(steady.map { mib($0.pss) })
        let peakPSS = during.map { mib($0.pss) }.max() ?? 0
        let steadyAvailable = median(steady.map { mib($0.memAvailable) })
        let minAvailable = during.map { mib($0.memAvailable) }.min() ?? 0
        writeAll(
            2,
            Array(
                "deploy-memory: \(label), \(strategy) → \(used): exit \(code) in \(fixed(duration))s, PSS \(fixed(steadyPSS, 0)) → peak \(fixed(peakPSS, 0)) MiB\n"
                    .utf8))
        return DeployResult(
            baton: label, requested: strategy, used: used, exitCode: code, durationSeconds: duration, steadyPSSMiB: steadyPSS,
            peakPSSMiB: peakPSS, peakOverSteady: steadyPSS > 0 ? peakPSS / steadyPSS : 0, extraPSSMiB: peakPSS - steadyPSS,
            steadyMemAvailableMiB: steadyAvailable, minMemAvailableMiB: minAvailable, memAvailableDropMiB: steadyAvailable - minAvailable,
            peakExtraWorkers: max(0, (during.map(\.workers).max() ?? 0) - options.workers), workersAfter: after, samplesSteady: steady.count,
            samplesDuringDeploy: during.count)
    }

    /// Total PSS over baton's children's trees, their count, and MemAvailable.
    private func sample(baton pid: pid_t) -> Sample {
        let children = ProcFS.children(of: pid)
        let pss = children.compactMap { ProcFS.treeMemory(of: $0, detailed: true)?.pss }.reduce(0, +)
        let available = (try? HostMemoryReader().info().available) ?? 0
        return Sample(pss: pss, workers: children.count, memAvailable: available)
    }

    /// "surge (requested)" from the deploy's progress line "…: 4 of 4 workers, surge (requested), max surge 1…".
    static func strategyLine(_ output: String, workers: Int) -> String {
        for line in output.split(separator: "\n") {
            guard let range = line.range(of: " of \(workers) workers, ") else { continue }
            var rest = line[range.upperBound...]
            if let end = rest.range(of: ", max surge") ?? rest.range(of: ", canary") { rest = rest[..<end.lowerBound] }
            return String(rest)
        }
        return "?"
    }

    private func printTable(_ r: Result) {
        print("")
        print(
            "deploy memory: \(r.workers) workers holding \(r.holdMiBPerWorker) MiB (boot \(fixed(r.bootDelaySeconds))s), "
                + "\(r.connections) keep-alive connections, sampled every \(fixed(r.sampleIntervalMs, 0)) ms")
        print(
            "| baton | strategy | used | exit | deploy s | steady PSS MiB | peak PSS MiB | peak/steady | extra MiB | MemAvailable drop MiB | peak extra workers | workers after |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for d in r.deploys {
            print(
                "| \(d.baton) | \(d.requested) | \(d.used.prefix { $0 != " " }) | \(d.exitCode) | \(fixed(d.durationSeconds)) | \(fixed(d.steadyPSSMiB, 1)) | "
                    + "\(fixed(d.peakPSSMiB, 1)) | \(fixed(d.peakOverSteady)) | \(fixed(d.extraPSSMiB, 1)) | \(fixed(d.memAvailableDropMiB, 0)) | \(d.peakExtraWorkers) | \(d.workersAfter) |"
            )
        }
        print("requests: \(r.totalRequests), failed: \(r.failedRequests) \(r.failures.isEmpty ? "" : "\(r.failures)")")
    }
}
