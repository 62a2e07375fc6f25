import BatonCore
import Testing

private let mib = 1_048_576.0

/// A host on a fake clock: workers whose USS (= PSS here) follows `base + rate × age + noise`,
/// sampled and checked every `interval`; a replacement ordered at t serves at t + `boot`
/// (until then the old worker keeps its memory), then the policy hears it finished.
private struct LeakingHost {
    struct Slot {
        var base: Double
        var rate: Double
        var startedAt: Duration
        var pid: Int32
        var history = MemoryHistory()
    }

    var slots: [Slot]
    var policy: RestartPolicy
    var interval: Duration = .seconds(5)
    var boot: Duration = .seconds(30)
    var budget = EffectiveBudget(bytes: 1000 << 20, source: .configured)
    var noise: (Int, Int) -> Double = { _, _ in 0 }
    /// Decisions: when, which slot, why.
    var decisions: [(at: Duration, slot: Int, reason: RestartReason)] = []
    /// The highest total seen at a check.
    var peakTotal = 0.0
    private var pending: (slot: Int, readyAt: Duration)?
    private var nextPid: Int32 = 1000
    private var step = 0

    init(slots: [(base: Double, rate: Double)], settings: RestartPolicy.Settings) {
        self.slots = slots.enumerated().map { i, s in Slot(base: s.base * mib, rate: s.rate * mib, startedAt: .zero, pid: Int32(100 + i)) }
        policy = RestartPolicy(settings: settings)
    }

    func uss(_ i: Int, at now: Duration) -> UInt64 {
        let age = LeakRateSeconds.of(now - slots[i].startedAt)
        return UInt64(max(0, slots[i].base + slots[i].rate * age + noise(i, step) * mib))
    }

    /// Runs checks from 0 to `end`.
    mutating func run(until end: Duration) {
        var now = Duration.zero
        while now <= end {
            if let p = pending, now >= p.readyAt {
                nextPid += 1
                slots[p.slot] = Slot(base: 100 * mib, rate: slots[p.slot].rate, startedAt: p.readyAt - boot, pid: nextPid)
                policy.replacementFinished(slot: p.slot, now: now)
                pending = nil
            }
            var workers: [RestartPolicy.Worker] = []
            var total = 0.0
            for i in slots.indices {
                let bytes = uss(i, at: now)
                slots[i].history.append(MemoryPoint(at: now, bytes: bytes))
                total += Double(bytes)
                workers.append(
                    RestartPolicy.Worker(
                        slot: i, pid: slots[i].pid, startedAt: slots[i].startedAt,
                        memory: MemorySample(rss: bytes, pss: bytes, uss: bytes), history: slots[i].history))
            }
            peakTotal = max(peakTotal, total)
            let tick = RestartPolicy.Tick(now: now, workers: workers, budget: budget, detailed: true, bootTime: boot)
            if case .replace(let slot, let reason, _)? = policy.tick(tick) {
                decisions.append((now, slot, reason))
                pending = (slot, now + boot)
            }
            now += interval
            step += 1
        }
    }
}

/// Duration → seconds for the fixtures.
private enum LeakRateSeconds {
    static func of(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) / 1e18
    }
}

private func settings(workers: Int, workerLimit: UInt64? = nil) -> RestartPolicy.Settings {
    RestartPolicy.Settings(
        workers: workers, threshold: 0.9, workerLimit: workerLimit, minWorkerAge: .seconds(300), checkInterval: .seconds(5))
}

@Suite("RestartPolicy: predictive")
struct MemoryPredictivePolicyTests {
    @Test("a worker leaking toward worker_limit is replaced early enough that its replacement is ready before it crosses")
    func workerLimitPredictedWithBootTime() throws {
        // Slot 0: 100 MiB + 0.5 MiB/s crosses 400 MiB at t = 600 s; slot 1 is flat.
        var host = LeakingHost(slots: [(100, 0.5), (100, 0)], settings: settings(workers: 2, workerLimit: 400 << 20))
        host.run(until: .seconds(600))
        let first = try #require(host.decisions.first)
        #expect(first.slot == 0)
        #expect(first.reason == .leakPrediction)
        #expect(first.at + host.boot <= .seconds(600), "ordered at \(first.at): its replacement serves after the crossing")
        #expect(!host.decisions.contains { $0.slot == 1 })
    }

    @Test("leaking workers are replaced before their total crosses the threshold, and it never does")
    func thresholdPredicted() throws {
        // 4 × (150 MiB + 0.1 MiB/s): 600 MiB + 0.4 MiB/s crosses 90% of 1000 MiB at t = 750 s.
        var host = LeakingHost(slots: Array(repeating: (150, 0.1), count: 4), settings: settings(workers: 4))
        host.run(until: .seconds(3600))
        let first = try #require(host.decisions.first)
        #expect(first.reason == .leakPrediction)
        #expect(first.at + host.boot <= .seconds(750), "ordered at \(first.at)")
        #expect(host.peakTotal <= 900 * mib, "peak \(host.peakTotal / mib) MiB")
        #expect(!host.decisions.contains { $0.reason == .memoryThreshold })
    }

    @Test("a flat worker is never replaced for memory")
    func flatNever() {
        var host = LeakingHost(slots: Array(repeating: (200, 0), count: 4), settings: settings(workers: 4, workerLimit: 400 << 20))
        host.run(until: .seconds(3600))
        #expect(host.decisions.isEmpty)
    }

    @Test("noise around a flat line near the threshold does not trigger")
    func noiseDoesNotTrigger() {
        var host = LeakingHost(slots: Array(repeating: (210, 0), count: 4), settings: settings(workers: 4, workerLimit: 240 << 20))
        // ±10 MiB per worker from a fixed LCG: totals up to 880 MiB, 20 MiB under the line.
        host.noise = { slot, step in
            var x = UInt64(truncatingIfNeeded: step &* 4 &+ slot) &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            x ^= x >> 33
            return Double(x % 2001) / 100 - 10
        }
        host.run(until: .seconds(3600))
        #expect(host.decisions.isEmpty, "\(host.decisions)")
    }
}
