import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "sampling cost": what one memory tick of baton costs with many large workers. N demo
/// workers (started directly, not through baton) each hold ≥ 50 MiB resident; each tick reads,
/// with the real BatonSystem readers, every worker's process tree:
///
/// - `tree`: the tree walk alone (`/proc/PID/task/*/children`), part of every read below;
/// - `statm`: RSS from `/proc/PID/statm` (the cheap tick, every `check_interval`);
/// - `smaps_rollup`: RSS/PSS/USS (the detailed tick: walks the page tables);
/// - `maps`: commit charge from `/proc/PID/maps` (before a deploy decision).
///
/// The shared variants map one memfd of `holdMiB` shared in every worker (`--hold-shared`), so
/// 256 × 50 MiB is resident per process yet stored once; the private variant holds anonymous
/// memory (`--hold`). Wall and CPU time (this thread's, split user/system) per tick, the median
/// over `ticks`, against the total RSS walked.
struct SamplingCost {
    let options: BenchOptions

    /// One read kind's cost per tick (medians).
    struct Cost: Codable {
        var wallMs: Double
        var cpuMs: Double
        var userMs: Double
        var systemMs: Double
        /// CPU per worker tree.
        var cpuMicrosPerWorker: Double
        /// CPU per MiB of RSS walked.
        var cpuMicrosPerMiB: Double
    }

    struct Variant: Codable {
        var name: String
        var workers: Int
        var holdMiB: Int
        var memory: String
        var ticks: Int
        var startSeconds: Double
        /// Sum of the workers' RSS from smaps_rollup (what the detailed tick walks).
        var totalRSSMiB: Double
        var totalPSSMiB: Double
        var rssPerWorkerMiB: Double
        var commitPerWorkerMiB: Double
        var tree: Cost
        var statm: Cost
        var smapsRollup: Cost
        var maps: Cost
    }

    struct Result: Codable {
        var scenario = "sampling-cost"
        var kernel: String
        var cpus: Int
        var transparentHugepages: String
        var variants: [Variant]
    }

    func run() throws {
        let ticks = options.quick ? 5 : 15
        // idle: the demo worker's own few MiB, the per-process cost without a large footprint.
        let plan: [(name: String, workers: Int, holdMiB: Int, shared: Bool)] = [
            ("idle-64", 64, 0, false), ("shared-64", 64, 50, true), ("shared-256", 256, 50, true), ("private-32", 32, 50, false),
        ]
        let directory = TestPaths.temporaryDirectory("bench")
        defer { TestPaths.remove(directory) }
        var variants: [Variant] = []
        for entry in plan {
            let variant = try measure(
                name: entry.name, workers: entry.workers, holdMiB: entry.holdMiB, shared: entry.shared, ticks: ticks, directory: directory)
            variants.append(variant)
            writeAll(
                2,
                Array("\(entry.name): smaps_rollup \(fixed(variant.smapsRollup.cpuMs)) ms CPU per tick over \(fixed(variant.totalRSSMiB, 0)) MiB\n".utf8))
        }
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let thp = (ProcFS.read("/sys/kernel/mm/transparent_hugepage/enabled") ?? "?").split(separator: "\n").first.map(String.init) ?? "?"
        let result = Result(kernel: kernel, cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), transparentHugepages: thp, variants: variants)
        printTable(result)
        try writeResult(result, name: "sampling-cost", directory: options.outputDirectory)
    }

    /// Starts the workers of one variant, measures `ticks` ticks of each read kind (interleaved,
    /// so the noise of a shared CPU falls on all of them alike), stops the workers.
    private func measure(name: String, workers: Int, holdMiB: Int, shared: Bool, ticks: Int, directory: String) throws -> Variant {
        let bytes = UInt64(max(holdMiB, 1)) << 20
        var memfd: Int32 = -1
        defer { if memfd >= 0 { close(memfd) } }
        var arguments = holdMiB > 0 ? ["--hold", String(holdMiB)] : []
        if shared {
            memfd = try CBatonLinuxShim.memoryFile(name: "baton-bench-shared", bytes: [UInt8](repeating: 0x11, count: Int(bytes)))
            arguments = ["--hold-shared", "/proc/self/fd/3"]
        }
        let started = monotonicNow()
        let pool = try WorkerPool(count: workers, arguments: arguments, passFDs: shared ? [memfd] : [], logPath: directory + "/\(name).log")
        defer { pool.stop() }
        try pool.waitUntilResident(bytes, timeout: .seconds(120))
        let startSeconds = seconds(monotonicNow() - started)
        let pids = pool.pids

        var rss: UInt64 = 0
        var pss: UInt64 = 0
        var commit: UInt64 = 0
        let kinds: [(String, () -> Void)] = [
            ("tree", { for pid in pids { _ = ProcFS.tree(of: pid) } }),
            ("statm", { for pid in pids { _ = ProcFS.treeMemory(of: pid, detailed: false) } }),
            (
                "smaps_rollup",
                {
                    var r: UInt64 = 0
                    var p: UInt64 = 0
                    for pid in pids {
                        guard let m = ProcFS.treeMemory(of: pid, detailed: true) else { continue }
                        r += m.rss
                        p += m.pss ?? 0
                    }
                    rss = r
                    pss = p
                }
            ),
            ("maps", { commit = pids.compactMap { CommitChargeReader().tree(of: $0) }.reduce(0, +) }),
        ]
        var samples: [String: [CPUSample]] = [:]
        for tick in -1..<ticks {
            for (kind, body) in kinds {
                let sample = CPUSample.measure(body)
                if tick >= 0 { samples[kind, default: []].append(sample) }  // tick -1 warms the caches
            }
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 0, 50)
        }
        let rssMiB = Double(rss) / 1_048_576
        func cost(_ kind: String) -> Cost {
            let s = samples[kind] ?? []
            let cpu = median(s.map(\.cpu))
            return Cost(
                wallMs: median(s.map(\.wall)) * 1000, cpuMs: cpu * 1000, userMs: median(s.map(\.user)) * 1000,
                systemMs: median(s.map(\.system)) * 1000, cpuMicrosPerWorker: cpu * 1e6 / Double(workers),
                cpuMicrosPerMiB: rssMiB > 0 ? cpu * 1e6 / rssMiB : 0)
        }
        return Variant(
            name: name, workers: workers, holdMiB: holdMiB,
            memory: shared ? "shared (one memfd mapped by all)" : holdMiB > 0 ? "private (anonymous)" : "idle (no hold)",
            ticks: ticks, startSeconds: startSeconds, totalRSSMiB: rssMiB, totalPSSMiB: Double(pss) / 1_048_576,
            rssPerWorkerMiB: rssMiB / Double(workers), commitPerWorkerMiB: Double(commit) / 1_048_576 / Double(workers),
            tree: cost("tree"), statm: cost("statm"), smapsRollup: cost("smaps_rollup"), maps: cost("maps"))
    }

    private func printTable(_ r: Result) {
        print("")
        print("sampling cost per tick (kernel \(r.kernel), \(r.cpus) CPUs, THP \(r.transparentHugepages)); medians; CPU = this thread's")
        print("| variant | workers | RSS walked MiB | PSS MiB | read | wall ms | CPU ms (user/sys) | µs CPU per worker | µs CPU per MiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for v in r.variants {
            for (kind, c) in [("tree", v.tree), ("statm", v.statm), ("smaps_rollup", v.smapsRollup), ("maps", v.maps)] {
                print(
                    "| \(v.name) | \(v.workers) | \(fixed(v.totalRSSMiB, 0)) | \(fixed(v.totalPSSMiB, 0)) | \(kind) | \(fixed(c.wallMs)) | "
                        + "\(fixed(c.cpuMs)) (\(fixed(c.userMs)) / \(fixed(c.systemMs))) | \(fixed(c.cpuMicrosPerWorker, 1)) | \(fixed(c.cpuMicrosPerMiB, 3)) |"
                )
            }
        }
    }
}

/// Wall time and this thread's CPU time of one call.
struct CPUSample {
    var wall: Double
    var cpu: Double
    var user: Double
    var system: Double

    static func measure(_ body: () -> Void) -> CPUSample {
        let wall0 = monotonicNow()
        let cpu0 = threadCPUSeconds()
        var ru0 = rusage()
        getrusage(rusageThread, &ru0)
        body()
        var ru1 = rusage()
        getrusage(rusageThread, &ru1)
        let cpu1 = threadCPUSeconds()
        let wall1 = monotonicNow()
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return CPUSample(
            wall: seconds(wall1 - wall0), cpu: cpu1 - cpu0, user: s(ru1.ru_utime) - s(ru0.ru_utime), system: s(ru1.ru_stime) - s(ru0.ru_stime))
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
func median(_ values: [Double]) -> Double {
    let v = values.sorted()
    guard !v.isEmpty else { return 0 }
    return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
}

/// Writes `value` as pretty JSON to DIR/NAME.json and says so.
func writeResult<T: Encodable>(_ value: T, name: String, directory: String) throws {
    try Filesystem.makeDirectory(directory, mode: 0o755)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let path = directory + "/\(name).json"
    TestPaths.write(path, String(decoding: try encoder.encode(value), as: UTF8.self) + "\n")
    print("wrote \(path)")
}
