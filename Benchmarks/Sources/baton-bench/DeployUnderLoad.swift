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
    /// The JSON file it writes in the output directory.
    var resultName = "deploy-under-load.json"

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
        /// Seconds from starting the CLI until it printed the deploy's first line (the
        /// daemon accepted the request and planned it): the CLI's start-up and the request.
        var firstLineSeconds: Double?
        /// Seconds from starting the CLI until the last old worker was drained, as the CLI
        /// printed it: every worker is new from then on (the rest is the last stability
        /// windows and the reply).
        var allNewSeconds: Double?
        /// The slowest new worker's boot plus the slowest drain, from the CLI's lines
        /// (`ready after`, `drained in`): what "one boot + drain" means in the ratio.
        var bootPlusDrainSeconds: Double?
        /// `allNewSeconds` over `bootPlusDrainSeconds` (issue #16's target: at most 1.3 for surge).
        var allNewRatio: Double?
        /// The same moment read from baton's own log (wall clock, ms): the N-th old worker's exit
        /// and the N-th new worker's ready, from the CLI's start. The CLI's lines reach the bench
        /// through a pipe and its 20 ms polling, which under load can add hundreds of ms.
        var allNewDaemonSeconds: Double?
        /// `allNewDaemonSeconds` over `bootPlusDrainSeconds`.
        var allNewDaemonRatio: Double?
        /// The CLI's lines, each prefixed with when the bench saw it (`+2.03s`), polled every 20 ms.
        var steps: [String]
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
        let load = LoadClient(port: baton.port, connections: options.connections, maxDuration: .seconds(1800), recordLatencies: true, pace: .zero)
        var windows:
            [(
                steadyStart: Duration, deployStart: Duration, deployEnd: Duration, release: String, strategy: String, code: Int32, boot: Double, peak: Int,
                firstLine: Double?, allNew: Double?, steps: [String], daemonAllNew: Double?
            )] = []
        for n in 0..<options.deploys {
            let strategy = n % 2 == 0 ? "surge" : "replace"
            let steadyStart = monotonicNow()
            waitFor(options.steadySeconds)
            let release = baton.makeRelease("r\(n + 2)")
            let logMark = baton.process.stderrLines.count
            let startWall = wallClockText()
            let start = monotonicNow()
            let surge = environmentValue("BENCH_MAX_SURGE").map { ["--max-surge", $0] } ?? []
            let cli = try baton.startCLI(["deploy", "--release", release, "--strategy", strategy] + surge)
            var peak = 0
            var steps: [(at: Double, line: String)] = []
            // Time-stamps the CLI's lines as they come (every 20 ms): where the deploy's time went.
            func collect() {
                let lines = cli.stdout.split(separator: "\n", omittingEmptySubsequences: true)
                let now = seconds(monotonicNow() - start)
                for line in lines.dropFirst(steps.count) { steps.append((now, String(line))) }
            }
            while cli.exitCode == nil {
                let live = ProcFS.children(of: baton.process.pid).count
                peak = max(peak, live - options.workers)
                collect()
                waitFor(0.02)
            }
            let end = monotonicNow()
            collect()
            let code = cli.exitCode ?? -1
            let boot = (try? baton.status().workers.compactMap(\.readyAfter).reduce(0, +)) ?? 0
            // Every worker is new once N old workers drained and N new ones were ready (surge: the
            // last drain; replace: the last new worker's ready).
            let drained = steps.filter { $0.line.contains(" drained in ") }
            let ready = steps.filter { $0.line.contains(" ready after ") }
            let allNew =
                drained.count >= options.workers && ready.count >= options.workers ? max(drained[options.workers - 1].at, ready[options.workers - 1].at) : nil
            let daemonAllNew = Self.allNewInLog(Array(baton.process.stderrLines.dropFirst(logMark)), since: startWall, workers: options.workers)
            windows.append(
                (
                    steadyStart, start, end, release, strategy, code, boot, peak, steps.first?.at, allNew, steps.map { "+\(fixed($0.at))s \($0.line)" },
                    daemonAllNew
                ))
            writeAll(2, Array("deploy \(n + 1)/\(options.deploys) (\(strategy)) exit \(code) in \(fixed(seconds(end - start)))s\n".utf8))
            // The CLI's steps (ready after, drained in, stable for): where the deploy's time went.
            if getenv("BENCH_DEBUG") != nil {
                writeAll(2, Array(windows.last!.steps.joined(separator: "\n").utf8) + [10])
                // baton's own log (wall-clock ms) beside the CLI's start: the daemon's side of each step.
                let log = baton.process.stderrLines.dropFirst(logMark).filter { !$0.contains("[slot ") || $0.contains("ready") }
                writeAll(2, Array("CLI started \(startWall)\n".utf8) + Array(log.joined(separator: "\n").utf8) + [10])
            }
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
                    duringDeploy: LatencySummary(during), failedDuringDeploy: 0, firstLineSeconds: w.firstLine, allNewSeconds: w.allNew,
                    bootPlusDrainSeconds: Self.bootPlusDrain(w.steps), allNewRatio: Self.bootPlusDrain(w.steps).flatMap { b in w.allNew.map { $0 / b } },
                    allNewDaemonSeconds: w.daemonAllNew,
                    allNewDaemonRatio: Self.bootPlusDrain(w.steps).flatMap { b in w.daemonAllNew.map { $0 / b } }, steps: w.steps))
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
        print(
            "| # | strategy | exit | deploy s | all new s | boot + drain s | ratio | ratio (baton's log) | first line s | sum of boots s | peak extra | steady p50/p99/max ms | deploy p50/p99/max ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for (n, d) in r.deploys.enumerated() {
            print(
                "| \(n + 1) | \(d.strategy) | \(d.exitCode) | \(fixed(d.durationSeconds)) | \(d.allNewSeconds.map { fixed($0) } ?? "–") | "
                    + "\(d.bootPlusDrainSeconds.map { fixed($0) } ?? "–") | \(d.allNewRatio.map { fixed($0) } ?? "–") | "
                    + "\(d.allNewDaemonRatio.map { fixed($0) } ?? "–") | "
                    + "\(d.firstLineSeconds.map { fixed($0) } ?? "–") | \(fixed(d.sumOfBootSeconds)) | \(d.peakExtraWorkers) | "
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
        let path = options.outputDirectory + "/" + resultName
        TestPaths.write(path, String(decoding: try encoder.encode(r), as: UTF8.self) + "\n")
        print("wrote \(path)")
    }

    /// Seconds from `start` (`HH:MM:SS.mmm`, UTC) until `workers` old workers exited from draining
    /// and `workers` new ones were ready, by baton's log lines (`2026-12-03T22:34:37.278Z ...`).
    static func allNewInLog(_ lines: [String], since start: String, workers: Int) -> Double? {
        func secondsOfDay(_ text: Substring) -> Double? {
            let parts = text.split(separator: ":")
            guard parts.count == 3, let h = Double(parts[0]), let m = Double(parts[1]), let s = Double(parts[2]) else { return nil }
            return h * 3600 + m * 60 + s
        }
        func at(_ line: String) -> Double? {
            guard line.count > 23, line.dropFirst(10).first == "T" else { return nil }
            return secondsOfDay(line.dropFirst(11).prefix(12))
        }
        guard let t0 = secondsOfDay(Substring(start)) else { return nil }
        let exits = lines.filter { $0.contains("worker exited") && $0.contains("was=draining") }.compactMap(at)
        let ready = lines.filter { $0.contains("worker ready after") }.compactMap(at)
        guard exits.count >= workers, ready.count >= workers else { return nil }
        var t = max(exits[workers - 1], ready[workers - 1]) - t0
        if t < 0 { t += 86_400 }  // past midnight
        return t
    }

    /// The slowest `ready after` plus the slowest `drained in` among the CLI's lines.
    static func bootPlusDrain(_ steps: [String]) -> Double? {
        func longest(after marker: String) -> Double? {
            steps.compactMap { line -> Double? in
                guard let range = line.range(of: marker) else { return nil }
                let word = line[range.upperBound...].prefix { $0 != "," && $0 != " " }
                if word.hasSuffix("ms") { return Double(word.dropLast(2)).map { $0 / 1000 } }
                return word.hasSuffix("s") ? Double(word.dropLast()) : nil
            }.max()
        }
        guard let boot = longest(after: " ready after "), let drain = longest(after: " drained in ") else { return nil }
        return boot + drain
    }

    private func waitFor(_ s: Double) {
        var pfd = pollfd(fd: -1, events: 0, revents: 0)
        _ = poll(&pfd, 0, Int32(s * 1000))
    }
}

/// The wall clock as baton's log prints it (UTC, milliseconds), to line the bench's
/// moments up with baton's log.
func wallClockText() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var tmv = tm()
    var t = ts.tv_sec
    gmtime_r(&t, &tmv)
    let ms = ts.tv_nsec / 1_000_000
    func pad(_ v: Int, _ n: Int) -> String { String(repeating: "0", count: max(0, n - String(v).count)) + String(v) }
    return "\(pad(Int(tmv.tm_hour), 2)):\(pad(Int(tmv.tm_min), 2)):\(pad(Int(tmv.tm_sec), 2)).\(pad(ms, 3))"
}
