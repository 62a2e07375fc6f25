import BatonCore
import Testing

private let mib: UInt64 = 1 << 20

@Suite("Roll-ahead margin and the held reservation")
struct MemoryReservationTests {
    private let workers = [
        WorkerGrowth(slot: 0, pid: 100, ussAtReady: 70 * mib, ussNow: 270 * mib),  // +200
        WorkerGrowth(slot: 1, pid: 101, ussAtReady: 70 * mib, ussNow: 250 * mib),  // +180
        WorkerGrowth(slot: 2, pid: 102, ussAtReady: 70 * mib, ussNow: 230 * mib),  // +160
        WorkerGrowth(slot: 3, pid: 103, ussAtReady: 70 * mib, ussNow: 70 * mib),  // fresh
    ]

    private func verdict(need: UInt64, available: Int64) -> PreflightVerdict {
        PreflightCheck.evaluate(
            DeployPlan(strategy: .replace, footprint: nil, tooling: need),
            headroom: Headroom(limits: [HeadroomLimit(kind: .cgroupV1Limit, available: available)]))
    }

    // The defect: the plan covered the snapshot's shortfall exactly, so a verdict that "fits"
    // by 18 MiB rolled nothing, and the re-leaking replacements ate that margin at once.
    @Test func aFitWithoutTheMarginStillRolls() {
        let v = verdict(need: 300 * mib, available: Int64(318 * mib))
        #expect(v.fits)
        let plan = RollAhead.plan(for: v, workers: workers, extra: 64 * mib)
        #expect(plan.canFit && plan.short == 46 * mib)
        #expect(plan.slots == [0, 1, 2] && plan.expectedCount == 1)
        #expect(plan.summary.contains("(the need plus 64.0 MiB kept free)"))
    }

    @Test func theMarginAndTheExpectedGrowthAreAddedToTheShortfall() {
        let v = verdict(need: 300 * mib, available: Int64(120 * mib))
        #expect(v.shortfall == 180 * mib)
        // 180 short + 64 margin + 100 expected growth = 344: slots 0 (200) and 1 (180).
        let plan = RollAhead.plan(for: v, workers: workers, extra: 164 * mib)
        #expect(plan.short == 344 * mib && plan.expectedCount == 2 && plan.expectedReclaim == 380 * mib)
        // Without the extra, one worker would have been planned.
        #expect(RollAhead.plan(for: v, workers: workers).expectedCount == 1)
    }

    @Test func slotsAlreadyRolledAreNotPlannedAgain() {
        let v = verdict(need: 300 * mib, available: Int64(200 * mib))
        let plan = RollAhead.plan(for: v, workers: workers, extra: 64 * mib, exclude: [0])
        #expect(plan.slots == [1, 2])
        // Every worker fresh and still short: refused with the figures.
        let none = RollAhead.plan(for: v, workers: workers, extra: 64 * mib, exclude: [0, 1, 2])
        #expect(!none.canFit && none.slots.isEmpty)
        #expect(none.summary.hasPrefix("cannot fit: 164.0 MiB short under cgroup memory.limit_in_bytes (v1) (the need plus 64.0 MiB kept free)"))
        #expect(none.summary.contains("restarting every worker not yet restarted would free about 0 B"))
    }

    @Test func growthRateFromTheFitElseFromTheAverageSinceReady() {
        let fitted = LeakRate(bytesPerSecond: 2_000, fittedBytes: 0, at: .zero)
        #expect(GrowthForecast.rate(leak: fitted, ussAtReady: 0, ussNow: 1_000_000, age: .seconds(1)) == 2_000)
        #expect(GrowthForecast.rate(leak: nil, ussAtReady: 10 * mib, ussNow: 70 * mib, age: .seconds(60)) == Double(mib))
        #expect(GrowthForecast.rate(leak: nil, ussAtReady: 70 * mib, ussNow: 60 * mib, age: .seconds(60)) == 0)
        #expect(GrowthForecast.rate(leak: nil, ussAtReady: nil, ussNow: 60 * mib, age: .seconds(60)) == 0)
        #expect(GrowthForecast.growth(rate: Double(mib), over: .seconds(30)) == 30 * mib)
        #expect(GrowthForecast.growth(rate: .infinity, over: .seconds(30)) == Units.maxSize)
    }

    @Test func theReservationRollsBeforeTheHeadroomFallsUnderIt() {
        let r = Reservation(bytes: 300 * mib, margin: 64 * mib, now: .seconds(100), hold: .seconds(900))
        // Falling 2 MiB/s, a replacement takes 10 s: roll under 300 + 64 + 20 MiB.
        #expect(r.trigger(growthRate: Double(2 * mib), replacementTime: .seconds(10)) == 384 * mib)
        #expect(!r.shouldRoll(available: Int64(400 * mib), growthRate: Double(2 * mib), replacementTime: .seconds(10)))
        #expect(r.shouldRoll(available: Int64(380 * mib), growthRate: Double(2 * mib), replacementTime: .seconds(10)))
        // Still above the reservation itself: the roll comes before it is spent.
        #expect(380 * mib > r.bytes)
        #expect(r.remaining(now: .seconds(400)) == .seconds(600))
        #expect(!r.expired(now: .seconds(999)) && r.expired(now: .seconds(1000)))
        #expect(r.remaining(now: .seconds(2000)) == .zero)
    }

    @Test func theHeldReservationRollsOnlyGrowthThatCanCloseTheGap() {
        let roll = { (short: UInt64) in RollAhead.reservationRoll(workers, short: short) }
        // 540 MiB of growth in all: the largest grower first while it can close the gap.
        #expect(roll(10 * mib) == .roll(workers[0]))
        #expect(roll(540 * mib) == .roll(workers[0]))
        #expect(roll(541 * mib) == .cannotClose(growth: 540 * mib))
        // Growth under 1 MiB and 5 % is none, and counts for nothing.
        let barely = WorkerGrowth(slot: 4, pid: 104, ussAtReady: 70 * mib, ussNow: 73 * mib)
        #expect(RollAhead.reservationRoll([workers[3], barely], short: mib) == .nothingGrown)
        #expect(RollAhead.reservationRoll(workers + [barely], short: 541 * mib) == .cannotClose(growth: 540 * mib))
    }

    @Test func statusLineOfTheReservation() {
        let r = ReservationReport(
            bytes: 300 * mib, marginBytes: 64 * mib, remainingSeconds: 898.4, rolls: 1, headroomBytes: -Int64(mib), triggerBytes: 390 * mib)
        #expect(
            r.line
                == "reservation: 300.0 MiB held (+ 64.0 MiB margin), 14m58s left, 1 worker rolled while held; headroom -1.0 MiB, next roll under 390.0 MiB")
        let plain = ReservationReport(bytes: mib, marginBytes: 0, remainingSeconds: 60, rolls: 2)
        #expect(plain.line == "reservation: 1.0 MiB held (+ 0 B margin), 1m left, 2 workers rolled while held")
    }

    @Test func headroomTrendIsTheFallRate() {
        var trend = HeadroomTrend(capacity: 4)
        #expect(trend.fallRate == 0)
        for i in 0..<6 { trend.append(at: .milliseconds(250 * i), available: Int64(500 * mib) - Int64(i) * Int64(mib)) }
        #expect(trend.fallRate == Double(4 * mib))
        trend.reset()
        trend.append(at: .seconds(1), available: 0)
        trend.append(at: .seconds(2), available: Int64(mib))
        #expect(trend.fallRate == 0)
    }
}

@Suite("preflight --unit: the unit's cgroup")
struct UnitCgroupTests {
    @Test func unitNamesAreOneSafeArgument() {
        #expect(UnitCgroup.isValidUnitName("puma@shop.service"))
        #expect(UnitCgroup.isValidUnitName("system-getty.slice"))
        #expect(UnitCgroup.isValidUnitName("dev-disk-by\\x2duuid.device"))
        #expect(!UnitCgroup.isValidUnitName(""))
        #expect(!UnitCgroup.isValidUnitName("--all"))
        #expect(!UnitCgroup.isValidUnitName("a b"))
        #expect(!UnitCgroup.isValidUnitName("x';rm -rf /'"))
    }

    @Test func controlGroupFromSystemctl() {
        #expect(UnitCgroup.controlGroup(fromSystemctl: "/system.slice/shop.service\n") == "/system.slice/shop.service")
        #expect(UnitCgroup.controlGroup(fromSystemctl: "ControlGroup=/system.slice/shop.service\n") == "/system.slice/shop.service")
        // Not running: systemctl prints an empty value.
        #expect(UnitCgroup.controlGroup(fromSystemctl: "\n") == nil)
        #expect(UnitCgroup.controlGroup(fromSystemctl: "") == nil)
    }

    @Test func hybridHostReadsTheV1MemoryHierarchyFirst() {
        let mounts = CgroupMount.parseMountInfo(
            """
            30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
            35 25 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
            36 25 0:32 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
            """)
        #expect(
            UnitCgroup.directories(controlGroup: "/system.slice/shop.service", mounts: mounts) == [
                "/sys/fs/cgroup/memory/system.slice/shop.service", "/sys/fs/cgroup/unified/system.slice/shop.service",
            ])
        // Inside a container whose cgroup namespace root is the unit's own cgroup.
        let namespaced = [CgroupMount(version: .v2, root: "/system.slice/shop.service", mountPoint: "/sys/fs/cgroup")]
        #expect(UnitCgroup.directories(controlGroup: "/system.slice/shop.service", mounts: namespaced) == ["/sys/fs/cgroup"])
        #expect(UnitCgroup.directories(controlGroup: "/system.slice/other.service", mounts: namespaced).isEmpty)
    }
}
