import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "deploy under load": baton with N demo workers that take `bootDelay` to
/// boot, K keep-alive clients, then `deploys` deploys one after another.
/// Reports failed requests, p50/p99/max latency during each deploy vs the
/// steady window before it, deploy duration vs the sum of worker boot times,
/// and the peak number of extra workers.
struct DeployUnderLoad {
    let options: BenchOptions

    struct DeployResult: Codable {
        var release: String
        var strategy: String
        var exitCode: Int32
        var durationSeconds: Double
        var sumOfBootSeconds: Double
        var peakExtraWorkers: Int
        var steady: LatencySummary
        var duringDeploy: LatencySummary
        var failedDuringDeploy: Int
    }

    struct Result: Codable {
        var scenario = "deploy-under-load"
        var workers: Int
        var connections: Int
        var bootDelaySeconds: Double
        var deploys: [DeployResult]
        var totalRequests: Int
        var failedRequests: Int
        var failures: [String: Int]
        var idleCloseRetries: Int
    }

    func run() throws {
        let worker = TestPaths.executable("baton-demo-worker")
        // BENCH_BOOT_NICE=N: `[readiness] boot_nice = N`; BENCH_MAX_SURGE=N: `deploy --max-surge N`
        // (A/B runs, development).
        let bootNice = environmentValue("BENCH_BOOT_NICE").map { "\nboot_nice = \($0)" } ?? ""
        let baton = try BatonHarness(
            workers: options.workers, command: [worker, "--boot-delay", String(options.bootDelay)],
            extraApp: "start_concurrency = \(options.workers)",
            sections: BatonHarness.defaultSections.replacing("[readiness]", with: "[readiness]" + bootNice, maxReplacements: 1), tag: "bench")
        defer { baton.stop() }
        let load = LoadClient(port: baton.port, connections: options.connections, maxDuration: .seconds(1800), recordLatencies: true)
        var windows:
            [(steadyStart: Duration, deployStart: Duration, deployEnd: Duration, release: String, strategy: String, code: Int32, boot: Double, peak: Int)] = []
        for n in 0..<options.deploys {
            let strategy = n % 2 == 0 ? "surge" : "replace"
            let steadyStart = monotonicNow()
            waitFor(options.steadySeconds)
            let release = baton.makeRelease("r\(n + 2)")
            let start = monotonicNow()
            let surge = environmentValue("BENCH_MAX_SURGE").map { ["--max-surge", $0] } ?? []
            let cli = try baton.startCLI(["deploy", "--release", release, "--strategy", strategy] + surge)
            var peak = 0
            while cli.exitCode == nil {
                let live = ProcFS.children(of: baton.process.pid).count
                peak = max(peak, live - options.workers)
                waitFor(0.02)
            }
            let end = monotonicNow()
            let code = cli.exitCode ?? -1
            let boot = (try? baton.status().workers.compactMap(\.readyAfter).reduce(0, +)) ?? 0
            windows.append((steadyStart, start, end, release, strategy, code, boot, peak))
            writeAll(2, Array("deploy \(n + 1)/\(options.deploys) (\(strategy)) exit \(code) in \(fixed(seconds(end - start)))s\n".utf8))
            // The CLI's steps (ready after, drained in, stable for): where the deploy's time went.
            if getenv("BENCH_DEBUG") != nil { writeAll(2, Array(cli.stdout.utf8)) }
        }
        waitFor(1)
        let report = load.stop()
        if getenv("BENCH_DEBUG") != nil {
            for sample in report.samples.sorted(by: { $0.latency > $1.latency }).prefix(8) {
                let w = windows.first { sample.end >= $0.steadyStart && sample.end <= $0.deployEnd + .seconds(5) }
                let rel = w.map { fixed(seconds(sample.end - $0.deployStart)) } ?? "?"
                print("slow: \(fixed(seconds(sample.latency) * 1000))ms pid \(sample.pid) new=\(sample.newConnection) ended \(rel)s after deploy start")
            }
        }
        var deploys: [DeployResult] = []
        for w in windows {
            let steady = report.samples.filter { $0.end >= w.steadyStart && $0.end < w.deployStart }.map(\.latency)
            let during = report.samples.filter { $0.end >= w.deployStart && $0.end <= w.deployEnd }.map(\.latency)
            deploys.append(
                DeployResult(
                    release: w.release, strategy: w.strategy, exitCode: w.code, durationSeconds: seconds(w.deployEnd - w.deployStart),
                    sumOfBootSeconds: w.boot, peakExtraWorkers: w.peak, steady: LatencySummary(steady),
                    duringDeploy: LatencySummary(during), failedDuringDeploy: 0))
        }
        let result = Result(
            workers: options.workers, connections: options.connections, bootDelaySeconds: options.bootDelay, deploys: deploys,
            totalRequests: report.ok + report.failed, failedRequests: report.failed, failures: report.failures,
            idleCloseRetries: report.idleCloseRetries)
        printTable(result)
        try write(result)
    }

    private func printTable(_ r: Result) {
        print("")
        print("deploy under load: \(r.workers) workers (boot \(fixed(r.bootDelaySeconds))s each), \(r.connections) keep-alive connections")
        print("| # | strategy | exit | deploy s | sum of boots s | peak extra | steady p50/p99/max ms | deploy p50/p99/max ms |")
        print("|---|---|---|---|---|---|---|---|")
        for (n, d) in r.deploys.enumerated() {
            print(
                "| \(n + 1) | \(d.strategy) | \(d.exitCode) | \(fixed(d.durationSeconds)) | \(fixed(d.sumOfBootSeconds)) | \(d.peakExtraWorkers) | "
                    + "\(fixed(d.steady.p50)) / \(fixed(d.steady.p99)) / \(fixed(d.steady.max)) | "
                    + "\(fixed(d.duringDeploy.p50)) / \(fixed(d.duringDeploy.p99)) / \(fixed(d.duringDeploy.max)) |")
        }
        print(
            "requests: \(r.totalRequests), failed: \(r.failedRequests) \(r.failures.isEmpty ? "" : "\(r.failures)"), idle keep-alive closes retried: \(r.idleCloseRetries)"
        )
    }

    private func write(_ r: Result) throws {
        try Filesystem.makeDirectory(options.outputDirectory, mode: 0o755)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let path = options.outputDirectory + "/deploy-under-load.json"
        TestPaths.write(path, String(decoding: try encoder.encode(r), as: UTF8.self) + "\n")
        print("wrote \(path)")
    }

    private func waitFor(_ s: Double) {
        var pfd = pollfd(fd: -1, events: 0, revents: 0)
        _ = poll(&pfd, 0, Int32(s * 1000))
    }
}
