import BatonCore
import Testing

/// A leak of megabytes a second (workers living seconds, checked every second): the restart
/// policy predicts the total's crossing from each worker's recent growth, long before the
/// minutes of samples a fitted leak rate needs, and orders a further recycle while one is in
/// flight when the rest will cross the line before it could act again.
@Suite("RestartPolicy: fast leak")
struct FastLeakPolicyTests {
    private static let mib: UInt64 = 1 << 20

    /// A history of `samples` USS points one second apart, ending at `end`, from `base` MiB
    /// growing `rate` MiB/s.
    private static func history(base: UInt64, rate: UInt64, samples: Int, end: Int) -> MemoryHistory {
        var h = MemoryHistory()
        for i in 0..<samples {
            let t = end - (samples - 1 - i)
            h.append(MemoryPoint(at: .seconds(t), bytes: (base + rate * UInt64(i)) * mib))
        }
        return h
    }

    @Test func recentGrowthIsTheClearSlopeOfTheWindowOnly() throws {
        // Flat for a minute, then 5 MiB/s over the last 4 s: only the window counts.
        var h = MemoryHistory()
        for t in 0...60 { h.append(MemoryPoint(at: .seconds(t), bytes: 100 * Self.mib)) }
        for i in 1...4 { h.append(MemoryPoint(at: .seconds(60 + i), bytes: (100 + 5 * UInt64(i)) * Self.mib)) }
        let rate = try #require(h.recentGrowth(within: .seconds(4)))
        #expect(abs(rate - 5 * Double(Self.mib)) < 1)
        #expect(h.leakRate == nil || h.leakRate!.bytesPerSecond < Double(Self.mib))
        // Over a long window the flat minute dominates: no clear growth.
        #expect(h.recentGrowth(within: .seconds(64)) == nil)
        // Too few samples in the window.
        #expect(h.recentGrowth(within: .seconds(1)) == nil)
    }

    @Test func aWobbleIsNoGrowth() {
        var h = MemoryHistory()
        for t in 0..<10 { h.append(MemoryPoint(at: .seconds(t), bytes: (t % 2 == 0 ? 100 : 110) * Self.mib)) }
        #expect(h.recentGrowth(within: .seconds(10)) == nil)
    }

    /// 4 workers started at 0, checked every second (`min_worker_age` 2 s, boot 1 s), line
    /// 50 % of 1000 MiB = 500 MiB.
    private static func settings(concurrency: Int = 1) -> RestartPolicy.Settings {
        var s = RestartPolicy.Settings(workers: 4, threshold: 0.5, minWorkerAge: .seconds(2), checkInterval: .seconds(1))
        s.concurrency = concurrency
        return s
    }

    private static func tick(_ workers: [RestartPolicy.Worker], at t: Int) -> RestartPolicy.Tick {
        RestartPolicy.Tick(
            now: .seconds(t), workers: workers, budget: EffectiveBudget(bytes: 1000 * mib, source: .configured), bootTime: .seconds(1))
    }

    @Test("4 workers of 100 MiB leaking 5 MiB/s each: recycled before the total crosses the line, not after")
    func orderedBeforeTheCrossing() throws {
        // Total 404 + 20 t MiB crosses 500 at t = 4.8 s: the check at 5 s sees it over.
        var policy = RestartPolicy(settings: Self.settings())
        var first: (at: Int, decision: RestartPolicy.Decision)?
        for t in 0...10 where first == nil {
            let workers = (0..<4).map { slot in
                let h = Self.history(base: 101, rate: 5, samples: t + 1, end: t)
                let pss = (101 + 5 * UInt64(t)) * Self.mib
                return RestartPolicy.Worker(
                    slot: slot, pid: Int32(100 + slot), startedAt: .zero,
                    memory: MemorySample(rss: pss, pss: pss, uss: pss - 10 * Self.mib + UInt64(slot) * Self.mib), history: h)
            }
            if let d = policy.tick(Self.tick(workers, at: t)) { first = (t, d) }
        }
        let (at, decision) = try #require(first)
        #expect(decision.reason == .leakPrediction, "\(decision)")
        // Ordered at 3 s (3 samples, 464 MiB + 20 MiB/s over one check plus one boot = 504 MiB),
        // where the threshold alone would wait for the check at 5 s.
        #expect(at == 3)
        #expect(decision.slot == 3)
    }

    /// An apps audit: with the default `smaps_every = 6`, 3 detailed reads never fell in the
    /// last 10 checks, so a worker's recent growth was never known and the first order came
    /// after the crossing (`workers' PSS 163.2 MiB > 40%`). Read every 6th check here: 4
    /// workers of 100 MiB growing 2 MiB/s, the line at 500 MiB crossed at 12.5 s.
    @Test("smaps_every 6: the recent growth spans three detailed reads, and the crossing is predicted")
    func recentGrowthWithDetailedReadsEverySixthCheck() throws {
        var settings = Self.settings()
        settings.smapsEvery = 6
        var policy = RestartPolicy(settings: settings)
        var first: (at: Int, decision: RestartPolicy.Decision)?
        for t in stride(from: 0, through: 24, by: 6) where first == nil {
            let workers = (0..<4).map { slot in
                var h = MemoryHistory()
                for at in stride(from: 0, through: t, by: 6) { h.append(MemoryPoint(at: .seconds(at), bytes: (100 + 2 * UInt64(at)) * Self.mib)) }
                let size = (100 + 2 * UInt64(t)) * Self.mib
                return RestartPolicy.Worker(
                    slot: slot, pid: Int32(100 + slot), startedAt: .zero,
                    memory: MemorySample(rss: size, pss: size, uss: size - 10 * Self.mib + UInt64(slot) * Self.mib), history: h)
            }
            if let d = policy.tick(Self.tick(workers, at: t)) { first = (t, d) }
        }
        let (at, decision) = try #require(first)
        #expect(at == 12, "\(decision)")
        #expect(decision.reason == .leakPrediction, "\(decision)")
    }

    @Test("one recycle in flight: a second is ordered when the rest will cross the line before the next check plus a boot")
    func aSecondWhenTheRestWillCross() throws {
        var policy = RestartPolicy(settings: Self.settings(concurrency: 2))
        // 150 + 3 × 110 = 480 MiB now, under the 500 MiB line; the three at 110 grow 10 MiB/s each.
        let sizes: [UInt64] = [150, 110, 110, 110]
        let workers = sizes.enumerated().map { slot, size in
            RestartPolicy.Worker(
                slot: slot, pid: Int32(100 + slot), startedAt: .zero,
                memory: MemorySample(rss: size * Self.mib, pss: size * Self.mib, uss: (size - 10 + UInt64(slot)) * Self.mib),
                history: Self.history(base: size - 50, rate: slot == 0 ? 0 : 10, samples: 6, end: 10))
        }
        let decided = policy.tick(Self.tick(workers, at: 10))
        let first = try #require(decided)
        #expect(first.slot == 0)
        #expect(first.reason == .leakPrediction)
        // Without slot 0 the rest is 330 MiB, growing 30 MiB/s: 390 in 2 s, under the line.
        #expect(policy.tick(Self.tick(workers, at: 10)) == nil)
        // Two seconds later the three are at 130 MiB: 390 + 60 = 450 within the horizon, still
        // under; at 150 MiB each, 450 + 60 = 510 crosses: the second goes.
        func grown(_ size: UInt64, end: Int) -> [RestartPolicy.Worker] {
            workers.map { w in
                guard w.slot != 0 else { return w }
                var g = w
                g.memory = MemorySample(rss: size * Self.mib, pss: size * Self.mib, uss: (size - 10 + UInt64(w.slot)) * Self.mib)
                g.history = Self.history(base: size - 50, rate: 10, samples: 6, end: end)
                return g
            }
        }
        #expect(policy.tick(Self.tick(grown(130, end: 12), at: 12)) == nil)
        let later = policy.tick(Self.tick(grown(150, end: 14), at: 14))
        let second = try #require(later)
        #expect(second.reason == .leakPrediction)
        #expect(second.slot == 3)
        #expect(policy.replacing.keys.sorted() == [0, 3])
    }

    @Test("a recycle in flight frees its worker's USS, not its PSS: the shared part comes back with the new worker")
    func whatComesBackIsTheUSS() throws {
        // gunicorn trees (a master holding the app, one worker sharing it): PSS is the app plus
        // the leak, USS the leak. Line: 38% of 1000 MiB = 380 MiB; total 460 MiB.
        var s = RestartPolicy.Settings(workers: 4, threshold: 0.38, minWorkerAge: .seconds(2), checkInterval: .seconds(1))
        s.concurrency = 2
        var policy = RestartPolicy(settings: s)
        let pss: [UInt64] = [130, 110, 110, 110]
        let uss: [UInt64] = [60, 45, 40, 35]
        let workers = (0..<4).map { slot in
            RestartPolicy.Worker(
                slot: slot, pid: Int32(100 + slot), startedAt: .zero,
                memory: MemorySample(rss: pss[slot] * Self.mib, pss: pss[slot] * Self.mib, uss: uss[slot] * Self.mib))
        }
        let decided = policy.tick(Self.tick(workers, at: 10))
        let first = try #require(decided)
        #expect(first.slot == 0)
        #expect(first.reason == .memoryThreshold)
        // Slot 0's recycle frees its 60 MiB of USS; its new tree takes the app's 70 MiB again:
        // 400 MiB stays over the line, so the second goes now (counting its PSS, 330 would not).
        let again = policy.tick(Self.tick(workers, at: 10))
        let second = try #require(again)
        #expect(second.slot == 1)
        #expect(second.reason == .memoryThreshold)
    }
}
