import Glibc

/// Knobs shared by the scenarios.
struct BenchOptions {
    /// Worker slots.
    var workers = 4
    /// Keep-alive client connections.
    var connections = 16
    /// Deploys in the deploy scenario.
    var deploys = 3
    /// Simulated boot time of each demo worker (seconds), like a framework loading.
    var bootDelay = 0.5
    /// Steady-state window before each trigger (seconds).
    var steadySeconds = 5.0
    /// Where results go.
    var outputDirectory = "Benchmarks/results"
    /// One short repetition.
    var quick = false
}

/// Latency percentiles of a set of samples, in milliseconds.
struct LatencySummary: Codable {
    var requests: Int
    var p50: Double
    var p99: Double
    var max: Double

    init(_ latencies: [Duration]) {
        let ms = latencies.map { d -> Double in
            let (s, atto) = d.components
            return Double(s) * 1000 + Double(atto) / 1e15
        }.sorted()
        requests = ms.count
        func pct(_ p: Double) -> Double {
            guard !ms.isEmpty else { return 0 }
            return ms[min(ms.count - 1, Int((Double(ms.count - 1) * p).rounded()))]
        }
        p50 = pct(0.5)
        p99 = pct(0.99)
        max = ms.last ?? 0
    }
}

/// RUSAGE_THREAD (a GNU extension the Glibc module does not export).
let rusageThread = __rusage_who_t(1)

/// This thread's CPU time in seconds (the scheduler's precise clock, not rusage's ticks).
func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func seconds(_ d: Duration) -> Double {
    let (s, atto) = d.components
    return Double(s) + Double(atto) / 1e18
}

func fixed(_ v: Double, _ digits: Int = 2) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((v * scale).rounded())
    let whole = n / Int(scale)
    var frac = String(abs(n) % Int(scale))
    while frac.count < digits { frac = "0" + frac }
    return digits == 0 ? "\(whole)" : "\(whole).\(frac)"
}

/// A scenario that could not run, with what went wrong.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
