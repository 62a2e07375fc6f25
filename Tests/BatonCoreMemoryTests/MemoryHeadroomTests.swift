import BatonCore
import Testing

private let mib: UInt64 = 1 << 20
private let gib: UInt64 = 1 << 30

/// Readings of the build machine: 24 GiB, mode 0, its v1 cgroup unlimited.
private func realReadings() throws -> MemoryReadings {
    MemoryReadings(
        host: try HostMemoryInfo.parse(MemoryFixtures.realMeminfo), overcommit: .heuristic,
        cgroup: try CgroupMemory.v1(
            path: "/process_api/975b40bdef79487d563803acf782847c", usage: MemoryFixtures.realV1LeafUsage,
            stat: MemoryFixtures.realV1LeafStat))
}

/// The v2 service whose parent slice caps it at 1 GiB (memory.high 900 MiB unless `high` is false).
private func v2Service(high: Bool = true) throws -> CgroupMemory {
    try CgroupMemory.v2(
        path: "/system.slice/baton@shop.service", current: MemoryFixtures.v2ServiceCurrent,
        stat: MemoryFixtures.v2ServiceStat,
        levels: [
            .init(path: "/system.slice/baton@shop.service", max: "max\n", high: high ? "943718400\n" : "max\n"),
            .init(path: "/system.slice", max: "1073741824\n", high: nil),
        ])
}

/// The hand-made mode-2 host: MemAvailable 12 GiB, commit headroom 100 MiB.
private func strictReadings(mode: OvercommitMode = .strict) throws -> MemoryReadings {
    MemoryReadings(host: try HostMemoryInfo.parse(MemoryFixtures.strictMeminfo), overcommit: mode, cgroup: nil)
}

@Suite("Memory budget and headroom")
struct MemoryHeadroomTests {
    @Test func budgetIsConfiguredElseCgroupElseMemTotal() throws {
        let real = try realReadings()
        #expect(
            EffectiveBudget.resolve(.bytes(4 * gib), readings: real)
                == EffectiveBudget(bytes: 4 * gib, source: .configured))
        // The build machine's cgroup has no limit: MemTotal.
        #expect(
            EffectiveBudget.resolve(.auto, readings: real)
                == EffectiveBudget(bytes: 24_683_656 * 1024, source: .memTotal))
        var limited = real
        limited.cgroup = try v2Service()
        #expect(EffectiveBudget.resolve(.auto, readings: limited) == EffectiveBudget(bytes: gib, source: .cgroup))
        limited.cgroup = nil
        #expect(EffectiveBudget.resolve(.auto, readings: limited).source == .memTotal)
    }

    /// `threshold` × a budget over the limit the kernel enforces is never reached before the OOM
    /// killer acts: the limit is the budget then, and the figure configured is kept for a warning.
    @Test func aConfiguredBudgetOverTheLimitIsTheLimit() throws {
        var limited = try realReadings()
        limited.cgroup = try v2Service()
        let budget = EffectiveBudget.resolve(.bytes(4 * gib), readings: limited)
        #expect(budget == EffectiveBudget(bytes: gib, source: .cgroup, configuredOver: 4 * gib))
        #expect(budget.overTheLimitWarning?.hasPrefix("[memory] budget 4.0 GiB is over the cgroup's memory limit, 1.0 GiB") == true)
        limited.cgroup = nil
        let host = EffectiveBudget.resolve(.bytes(64 * gib), readings: limited)
        #expect(host.source == .memTotal && host.bytes == 24_683_656 * 1024 && host.configuredOver == 64 * gib)
        #expect(EffectiveBudget.resolve(.bytes(gib / 2), readings: limited).overTheLimitWarning == nil)
        // A re-audit: preflight's memory.budget headroom still counted from the configured figure.
        var memory = MemoryConfig()
        memory.budget = .bytes(64 * gib)
        let headroom = Headroom(readings: limited, memory: memory, workersPSS: gib)
        let budgetLimit = try #require(headroom.limits.first { $0.kind == .configuredBudget })
        #expect(budgetLimit.available == Int64(24_683_656 * 1024) - Int64(gib))
    }

    @Test func hostBindsOnTheBuildMachine() throws {
        let headroom = Headroom(readings: try realReadings(), memory: MemoryConfig(), workersPSS: 0)
        #expect(headroom.limits.map(\.kind) == [.hostAvailable])
        #expect(
            headroom.tightest == HeadroomLimit(kind: .hostAvailable, available: Int64(24_236_444 * 1024 - 512 * mib)))
    }

    @Test func cgroupMaxBindsWhenTheParentSliceIsSmall() throws {
        var readings = try realReadings()
        readings.cgroup = try v2Service(high: false)
        let headroom = Headroom(readings: readings, memory: MemoryConfig(), workersPSS: 0)
        #expect(headroom.limits.map(\.kind) == [.hostAvailable, .cgroupMax])
        #expect(headroom.tightest == HeadroomLimit(kind: .cgroupMax, available: Int64(gib) - 207_351_808))
        #expect(MemoryLimitKind.cgroupMax.name == "cgroup memory.max")
    }

    @Test func cgroupHighBindsBelowMax() throws {
        var readings = try realReadings()
        readings.cgroup = try v2Service()
        let headroom = Headroom(readings: readings, memory: MemoryConfig(), workersPSS: 0)
        #expect(headroom.limits.map(\.kind) == [.hostAvailable, .cgroupMax, .cgroupHigh])
        #expect(headroom.tightest == HeadroomLimit(kind: .cgroupHigh, available: Int64(900 * mib) - 207_351_808))
    }

    @Test func v1LimitInheritedFromTheParentBinds() throws {
        var readings = try realReadings()
        readings.cgroup = try CgroupMemory.v1(
            path: "/shop/workers", usage: "251658240\n", stat: MemoryFixtures.v1ChildStat)
        let headroom = Headroom(readings: readings, memory: MemoryConfig(), workersPSS: 0)
        let workingSet = 251_658_240 - (25_165_824 + 16_777_216 - 8_388_608)
        #expect(
            headroom.tightest == HeadroomLimit(kind: .cgroupV1Limit, available: Int64(512 * mib) - Int64(workingSet)))
    }

    @Test func commitLimitBindsUnderModeTwoWhileMemAvailableIsAmple() throws {
        let headroom = Headroom(readings: try strictReadings(), memory: MemoryConfig(), workersPSS: 0)
        #expect(headroom.limit(.hostAvailable)?.available == Int64(12 * gib - 512 * mib))
        #expect(headroom.tightest == HeadroomLimit(kind: .commitLimit, available: Int64(100 * mib)))
        #expect(headroom.tightest.kind.name == "commit limit (vm.overcommit_memory=2)")
        // The same host in mode 0: the commit limit is not enforced, so it is not a limit.
        let heuristic = Headroom(readings: try strictReadings(mode: .heuristic), memory: MemoryConfig(), workersPSS: 0)
        #expect(heuristic.limit(.commitLimit) == nil)
        #expect(heuristic.tightest.kind == .hostAvailable)
    }

    @Test func configuredBudgetBindsOnTheWorkersPSS() throws {
        let memory = MemoryConfig(budget: .bytes(2 * gib))
        let headroom = Headroom(readings: try realReadings(), memory: memory, workersPSS: 1900 * mib)
        #expect(headroom.tightest == HeadroomLimit(kind: .configuredBudget, available: Int64(148 * mib)))
        let over = Headroom(readings: try realReadings(), memory: memory, workersPSS: 2100 * mib)
        #expect(over.tightest.available == -Int64(52 * mib))
    }

    @Test func theNeedDecidesWhichLimitBinds() {
        let headroom = Headroom(limits: [
            HeadroomLimit(kind: .hostAvailable, available: Int64(300 * mib)),
            HeadroomLimit(kind: .commitLimit, available: Int64(400 * mib)),
        ])
        #expect(headroom.tightest.kind == .hostAvailable)
        // 100 MiB of PSS but 350 MiB of commit charge: the commit limit has less slack left.
        #expect(headroom.binding(memoryNeed: 100 * mib, commitNeed: 350 * mib).kind == .commitLimit)
        #expect(headroom.binding(memoryNeed: 100 * mib, commitNeed: 150 * mib).kind == .hostAvailable)
    }
}

@Suite("Preflight verdicts")
struct MemoryPreflightTests {
    /// A host with `available` after the reserve, and optionally a cgroup and commit headroom.
    private func headroom(host: UInt64, cgroupMax: UInt64? = nil, commit: UInt64? = nil) -> Headroom {
        var limits = [HeadroomLimit(kind: .hostAvailable, available: Int64(host))]
        if let cgroupMax { limits.append(HeadroomLimit(kind: .cgroupMax, available: Int64(cgroupMax))) }
        if let commit { limits.append(HeadroomLimit(kind: .commitLimit, available: Int64(commit))) }
        return Headroom(limits: limits)
    }

    @Test func surgeFits() {
        let plan = DeployPlan(strategy: .surge, footprint: 100 * mib, tooling: 512 * mib)
        let v = PreflightCheck.evaluate(plan, headroom: headroom(host: 3174 * mib))
        #expect(v.fits && v.strategy == .surge && v.memoryNeed == 612 * mib && v.shortfall == 0)
        #expect(
            v.summary
                == "fits: need 612.0 MiB (1 × 100.0 MiB surge + 512.0 MiB tooling), have 3.1 GiB (host MemAvailable − reserve)"
        )
    }

    @Test func surgeDoesNotFitUnderTheCgroup() {
        let plan = DeployPlan(strategy: .surge, maxSurge: 2, footprint: 300 * mib, tooling: 64 * mib)
        let v = PreflightCheck.evaluate(plan, headroom: headroom(host: 8 * gib, cgroupMax: 400 * mib))
        #expect(!v.fits && v.binding.kind == .cgroupMax && v.shortfall == 264 * mib)
        #expect(
            v.summary
                == "does not fit: need 664.0 MiB (2 × 300.0 MiB surge + 64.0 MiB tooling), have 400.0 MiB (binding: cgroup memory.max)"
        )
    }

    @Test func commitChargeNotPSSUnderModeTwo() throws {
        // A 12 MiB-PSS python worker is charged 138 MiB: fine by PSS, refused by the commit limit.
        let readings = try strictReadings()
        let h = Headroom(readings: readings, memory: MemoryConfig(), workersPSS: 0)
        let plan = DeployPlan(strategy: .surge, footprint: 12 * mib, commitPerWorker: 144_785_408)
        let v = PreflightCheck.evaluate(plan, headroom: h)
        #expect(!v.fits && v.binding.kind == .commitLimit)
        #expect(v.commitNeed == 144_785_408 && v.memoryNeed == 12 * mib)
        #expect(
            v.summary
                == "does not fit: need 138.1 MiB of commit charge (1 × 138.1 MiB surge), have 100.0 MiB (binding: commit limit (vm.overcommit_memory=2))"
        )
        // Without a measured commit charge the footprint stands in for it, and it fits.
        #expect(PreflightCheck.evaluate(DeployPlan(strategy: .surge, footprint: 12 * mib), headroom: h).fits)
    }

    @Test func replaceNeedsOnlyTheTooling() {
        let plan = DeployPlan(strategy: .replace, footprint: 900 * mib, tooling: 256 * mib)
        let v = PreflightCheck.evaluate(plan, headroom: headroom(host: 300 * mib))
        #expect(v.fits && v.strategy == .replace && v.extraWorkers == 0 && v.memoryNeed == 256 * mib)
        #expect(
            v.summary
                == "fits: need 256.0 MiB (replace: no extra worker + 256.0 MiB tooling), have 300.0 MiB (host MemAvailable − reserve)"
        )
        let tight = PreflightCheck.evaluate(plan, headroom: headroom(host: 8 * gib, cgroupMax: 200 * mib))
        #expect(!tight.fits && tight.shortfall == 56 * mib)
        #expect(tight.summary.hasSuffix("have 200.0 MiB (binding: cgroup memory.max)"))
    }

    @Test func autoSurgesWhenItFitsAndFallsBackToReplace() {
        let plan = DeployPlan(strategy: .auto, footprint: 100 * mib, tooling: 100 * mib)
        #expect(PreflightCheck.evaluate(plan, headroom: headroom(host: gib)).strategy == .surge)
        let v = PreflightCheck.evaluate(plan, headroom: headroom(host: 150 * mib))
        #expect(v.fits && v.strategy == .replace)
        #expect(
            v.summary
                == "fits: need 100.0 MiB (replace: no extra worker + 100.0 MiB tooling), have 150.0 MiB (host MemAvailable − reserve); a surge would need 200.0 MiB"
        )
        let none = PreflightCheck.evaluate(plan, headroom: headroom(host: 50 * mib))
        #expect(!none.fits && none.strategy == .replace && none.shortfall == 50 * mib)
    }

    @Test func unknownFootprint() {
        let surge = PreflightCheck.evaluate(
            DeployPlan(strategy: .surge, footprint: nil), headroom: headroom(host: 8 * gib))
        #expect(!surge.fits)
        #expect(surge.summary.contains("footprint is unknown"))
        let auto = PreflightCheck.evaluate(
            DeployPlan(strategy: .auto, footprint: nil), headroom: headroom(host: 8 * gib))
        #expect(auto.fits && auto.strategy == .replace)
        #expect(auto.summary.hasSuffix("; surge not considered: the worker footprint is unknown"))
        #expect(!RollAhead.plan(for: surge, workers: []).canFit)
    }

    @Test func negativeHeadroomIsShownSigned() {
        let v = PreflightCheck.evaluate(
            DeployPlan(strategy: .replace, footprint: nil, tooling: 10 * mib),
            headroom: Headroom(limits: [HeadroomLimit(kind: .hostAvailable, available: -Int64(100 * mib))]))
        #expect(v.shortfall == 110 * mib)
        #expect(v.summary.contains("have -100.0 MiB (binding: host MemAvailable − reserve)"))
    }
}

@Suite("Roll-ahead")
struct MemoryRollAheadTests {
    private let workers = [
        WorkerGrowth(slot: 0, pid: 100, ussAtReady: 80 * mib, ussNow: 180 * mib),  // +100
        WorkerGrowth(slot: 1, pid: 101, ussAtReady: 500 * mib, ussNow: 520 * mib),  // +20, but the largest
        WorkerGrowth(slot: 2, pid: 102, ussAtReady: 80 * mib, ussNow: 380 * mib),  // +300
        WorkerGrowth(slot: 3, pid: 103, ussAtReady: 90 * mib, ussNow: 70 * mib),  // shrank
        WorkerGrowth(slot: 4, pid: 104, ussAtReady: 10 * mib, ussNow: 110 * mib),  // +100, ties slot 0
    ]

    @Test func orderIsByGrowthNotBySize() {
        #expect(RollAhead.order(workers).map(\.slot) == [2, 0, 4, 1, 3])
        #expect(workers[3].growth == 0)
    }

    @Test func planRestartsUntilTheShortfallIsCovered() {
        let verdict = PreflightCheck.evaluate(
            DeployPlan(strategy: .replace, footprint: nil, tooling: 512 * mib),
            headroom: Headroom(limits: [HeadroomLimit(kind: .hostAvailable, available: Int64(150 * mib))]))
        #expect(verdict.shortfall == 362 * mib)
        let plan = RollAhead.plan(for: verdict, workers: workers)
        // Slots 2 and 0 are expected to be enough; 4 and 1 follow if the re-measured figures say no.
        #expect(plan.canFit && plan.slots == [2, 0, 4, 1] && plan.expectedCount == 2 && plan.expectedReclaim == 400 * mib)
        #expect(
            plan.summary
                == "362.0 MiB short under host MemAvailable: restarting slots 2, 0 should free about 400.0 MiB; re-measured after each"
        )
    }

    @Test func planRefusesWhenEvenEveryRestartIsNotEnough() {
        let verdict = PreflightCheck.evaluate(
            DeployPlan(strategy: .replace, footprint: nil, tooling: 2 * gib),
            headroom: Headroom(limits: [HeadroomLimit(kind: .cgroupMax, available: Int64(100 * mib))]))
        let plan = RollAhead.plan(for: verdict, workers: workers)
        #expect(!plan.canFit && plan.slots.isEmpty && plan.expectedReclaim == 520 * mib)
        #expect(
            plan.summary
                == "cannot fit: 1.9 GiB short under cgroup memory.max; restarting every worker would free about 520.0 MiB (their growth since boot)"
        )
    }

    @Test func nothingToDoWhenItFits() {
        let verdict = PreflightCheck.evaluate(
            DeployPlan(strategy: .replace, footprint: nil),
            headroom: Headroom(limits: [HeadroomLimit(kind: .hostAvailable, available: Int64(gib))]))
        #expect(
            RollAhead.plan(for: verdict, workers: workers)
                == RollAheadPlan(slots: [], expectedReclaim: 0, canFit: true, summary: "fits without restarts"))
    }
}
