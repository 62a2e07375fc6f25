import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc

/// "control-latency": how long baton's own endpoints wait while it watches many large
/// workers. baton supervises 128 demo workers that each map one 50 MiB file shared
/// (`--hold-shared`: 6.4 GiB resident to walk, stored once in the page cache) and checks
/// memory every second with smaps_rollup every check; meanwhile one client scrapes
/// `[metrics]` back to back. The periodic reads run off the event loop, so a scrape
/// waits only for its own rendering, not for a page-table walk.
struct ControlLatency {
    let options: BenchOptions
    let workers = 128
    let holdMiB = 50

    struct Result: Codable {
        var scenario = "control-latency"
        var workers: Int
        var holdMiB: Int
        var checkInterval: String
        var seconds: Double
        var scrapes: Int
        var failed: Int
        var p50: Double
        var p99: Double
        var max: Double
        var bytesPerScrape: Int
        /// `baton status` (every worker's smaps_rollup read now), once a second meanwhile: its own latency.
        var statusCalls: Int
        var statusFailed: Int
        var statusP50: Double
        var statusMax: Double
    }

    func run() throws {
        let directory = TestPaths.temporaryDirectory("bench-hold")
        defer { TestPaths.remove(directory) }
        let file = directory + "/hold"
        try writeHoldFile(file)
        let baton = try BatonHarness(
            workers: workers, command: [TestPaths.executable("baton-demo-worker"), "--hold-shared", file], extraApp: "start_concurrency = 16",
            sections: """
                [listen]
                addresses = ["127.0.0.1:0"]
                [readiness]
                mode = "notify"
                timeout = "60s"
                [memory]
                check_interval = "1s"
                smaps_every = 1
                [metrics]
                address = "127.0.0.1:0"
                """, waitReady: false, tag: "bench-ctl")
        defer { baton.stop() }
        guard baton.process.waitForLine(containing: "all \(workers) workers ready", timeout: .seconds(180)) != nil else {
            throw BenchError("baton did not start \(workers) workers: \(baton.process.stderrLines.suffix(5).joined(separator: " | "))")
        }
        guard let port = baton.metricsPort() else { throw BenchError("no metrics address in baton's log") }
        pause(2)  // a few memory checks in
        let seconds = options.quick ? 5.0 : 15.0
        var latencies: [Duration] = []
        var failed = 0
        var bytes = 0
        let end = monotonicNow() + .milliseconds(Int64(seconds * 1000))
        // Meanwhile `baton status` once a second: it reads every worker's smaps_rollup now.
        let statuses = Protected<[(Duration, Bool)]>([])
        let statusThread = Thread {
            while monotonicNow() < end {
                let start = monotonicNow()
                let ok = (try? baton.cli(["status", "--json"], timeout: .seconds(30)).code) == 0
                statuses.withLock { $0.append((monotonicNow() - start, ok)) }
                pause(1)
            }
        }
        defer { statusThread.join() }
        while monotonicNow() < end {
            let start = monotonicNow()
            let reply = HTTP.get(port: port, path: "/metrics")
            latencies.append(monotonicNow() - start)
            if reply?.status == 200 { bytes = reply?.body.utf8.count ?? 0 } else { failed += 1 }
            pause(0.02)
        }
        statusThread.join()
        let summary = LatencySummary(latencies)
        let status = statuses.withLock { $0 }
        let statusSummary = LatencySummary(status.map(\.0))
        let result = Result(
            workers: workers, holdMiB: holdMiB, checkInterval: "1s, smaps_rollup every check", seconds: seconds, scrapes: summary.requests,
            failed: failed, p50: summary.p50, p99: summary.p99, max: summary.max, bytesPerScrape: bytes, statusCalls: status.count,
            statusFailed: status.filter { !$0.1 }.count, statusP50: statusSummary.p50, statusMax: statusSummary.max)
        print("")
        print(
            "control latency: GET /metrics back to back for \(fixed(seconds, 0)) s, baton watching \(workers) workers of \(holdMiB) MiB (memory check every 1 s, smaps_rollup every check)"
        )
        print("and `baton status` once a second (it reads every worker's smaps_rollup now)")
        print("| scrapes | failed | p50 ms | p99 ms | max ms | bytes per scrape | status calls | failed | status p50 ms | status max ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(
            "| \(result.scrapes) | \(failed) | \(fixed(result.p50)) | \(fixed(result.p99)) | \(fixed(result.max)) | \(bytes) | \(result.statusCalls) | \(result.statusFailed) | \(fixed(result.statusP50)) | \(fixed(result.statusMax)) |"
        )
        try writeResult(result, name: "control-latency", directory: options.outputDirectory)
    }

    /// A file of `holdMiB` MiB for the workers to map shared.
    private func writeHoldFile(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchError("cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x11, count: 1 << 20)
        for _ in 0..<holdMiB { writeAll(fd, chunk) }
    }
}
