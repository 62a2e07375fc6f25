import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc

/// "take-over": baton outside systemd with N demo workers that take `bootDelay` to boot and
/// K keep-alive clients; kill -9 of baton, then `baton serve` again with the same config at
/// once. The new baton takes the listening socket from the orphaned workers, starts its own
/// and drains the orphans. Reports refused and failed requests (by kind) from the kill until
/// one second after the last orphan is gone, the latency in that window, and how long the new
/// baton took to be ready and to finish the drain. `deploys` repetitions.
struct TakeOverScenario {
    let options: BenchOptions

    struct Run: Codable {
        var okRequests: Int
        var refused: Int
        var failed: Int
        var failures: [String: Int]
        var idleCloseRetries: Int
        var readySeconds: Double
        var drainedSeconds: Double
        var steady: LatencySummary
        var afterKill: LatencySummary
    }

    struct Result: Codable {
        var scenario = "take-over"
        var workers: Int
        var connections: Int
        var bootDelaySeconds: Double
        var runs: [Run]
    }

    func run() throws {
        var runs: [Run] = []
        for n in 0..<options.deploys {
            runs.append(try once())
            writeAll(2, Array("take-over \(n + 1)/\(options.deploys) done\n".utf8))
        }
        let result = Result(workers: options.workers, connections: options.connections, bootDelaySeconds: options.bootDelay, runs: runs)
        print("")
        print(
            "take-over: kill -9 of baton (no systemd), baton serve again at once; \(result.workers) workers (boot \(fixed(result.bootDelaySeconds))s), \(result.connections) keep-alive connections"
        )
        print("| # | ok | refused | failed | new baton ready s | orphans drained s | steady p50/p99/max ms | after kill p50/p99/max ms |")
        print("|---|---|---|---|---|---|---|---|")
        for (i, r) in runs.enumerated() {
            print(
                "| \(i + 1) | \(r.okRequests) | \(r.refused) | \(r.failed) \(r.failures.isEmpty ? "" : "\(r.failures)") | \(fixed(r.readySeconds)) | \(fixed(r.drainedSeconds)) | "
                    + "\(fixed(r.steady.p50)) / \(fixed(r.steady.p99)) / \(fixed(r.steady.max)) | "
                    + "\(fixed(r.afterKill.p50)) / \(fixed(r.afterKill.p99)) / \(fixed(r.afterKill.max)) |")
        }
        try writeResult(result, name: "take-over", directory: options.outputDirectory)
    }

    private func once() throws -> Run {
        let command = [TestPaths.executable("baton-demo-worker"), "--boot-delay", String(options.bootDelay)]
        let extra = "start_concurrency = \(options.workers)"
        let first = try BatonHarness(workers: options.workers, command: command, extraApp: extra, tag: "bench-tko")
        let orphans = try first.status().workers.map(\.pid)
        let pidfds = orphans.map { ProcessWatch.open($0) }
        defer { pidfds.forEach { close($0) } }
        let load = LoadClient(port: first.port, connections: options.connections, maxDuration: .seconds(600), recordLatencies: true, pace: .zero)
        let steadyStart = monotonicNow()
        pause(options.steadySeconds)
        let killed = monotonicNow()
        first.process.signal(SIGKILL)
        _ = first.process.wait(timeout: .seconds(10))
        let second: BatonHarness
        do {
            second = try BatonHarness(workers: options.workers, command: command, extraApp: extra, tag: "bench-tko", reuse: first.directory)
        } catch {
            _ = load.stop()
            for fd in pidfds { CBatonLinuxShim.signal(pidfd: fd, SIGKILL) }
            TestPaths.remove(first.directory)
            throw error
        }
        defer { second.stop() }
        let ready = monotonicNow()
        for fd in pidfds where !ProcessWatch.waitExit(fd, timeout: .seconds(120)) {
            throw BenchError("an orphaned worker was still running 120 s after the take-over")
        }
        let drained = monotonicNow()
        pause(1)
        let report = load.stop()
        let steady = report.samples.filter { $0.end >= steadyStart && $0.end < killed }.map(\.latency)
        let after = report.samples.filter { $0.end >= killed }.map(\.latency)
        return Run(
            okRequests: report.ok, refused: report.failures["refused"] ?? 0, failed: report.failed, failures: report.failures,
            idleCloseRetries: report.idleCloseRetries, readySeconds: seconds(ready - killed), drainedSeconds: seconds(drained - killed),
            steady: LatencySummary(steady), afterKill: LatencySummary(after))
    }
}
