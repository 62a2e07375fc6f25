import BatonCore
import Testing

@Suite("BootBudget")
struct BootBudgetTests {
    @Test func oneBootPerCPUUntilABootWasMeasured() {
        #expect(BootBudget(cpus: 2).boots == 2)
        #expect(BootBudget(cpus: 0).boots == 1)
    }

    @Test func aBootThatComputesTakesAWholeCPU() {
        // An interpreter loading an app: 190 ms of CPU in a 200 ms boot.
        var budget = BootBudget(cpus: 2)
        budget.record(cpuSeconds: 0.19, bootSeconds: 0.2)
        #expect(budget.boots == 2)
        // More CPU than wall time (threads on both cores) is still one CPU's worth.
        budget.record(cpuSeconds: 0.6, bootSeconds: 0.3)
        #expect(budget.boots == 2)
    }

    /// A CPU audit: a release whose boots compute started every slot at once (the budget came
    /// from the previous release's sleeping boots), every boot timed out queued for a CPU, and
    /// as a boot that timed out was never recorded, each retry did the same.
    @Test func aBootStarvedOutOfItsTimeoutCountsAsAWholeCPU() {
        var budget = BootBudget(cpus: 1)
        budget.record(cpuSeconds: 0.02, bootSeconds: 2, waitedSeconds: 0)
        #expect(budget.boots == BootBudget.maxPerCPU)
        budget.recordStarved()
        #expect(budget.boots == 1 && budget.shares.last == 1)
    }

    /// The defect (bench, baton+puma instant, four boots at once on two cores): each boot used
    /// 0.7 s of CPU in 1.7 s, the rest queued for a CPU behind the others, so its share looked
    /// like 0.42 and the next rollout booted 2 / 0.42 = 4 at once again.
    @Test func aChangedCPUCountKeepsTheBootsMeasured() {
        var budget = BootBudget(cpus: 1)
        budget.record(cpuSeconds: 0.5, bootSeconds: 1)
        #expect(budget.boots == 2)
        budget.follow(cpus: 3)
        #expect(budget.cpus == 3 && budget.boots == 6 && budget.shares == [0.5])
        budget.follow(cpus: 0)
        #expect(budget.cpus == 1)
    }

    @Test func timeQueuedForACPUIsNotTheBootsOwn() {
        var budget = BootBudget(cpus: 2)
        budget.record(cpuSeconds: 0.7, bootSeconds: 1.67, waitedSeconds: 0.95)
        #expect(budget.boots == 2)
        // A boot that sleeps after loading still lets many boot at once: it queued little.
        var sleeper = BootBudget(cpus: 2)
        sleeper.record(cpuSeconds: 0.19, bootSeconds: 2.2, waitedSeconds: 0.01)
        #expect(sleeper.boots == 23)
        // Waits summed over threads can exceed the boot: it ran a tenth of it at least (never a
        // division by zero). A busy boot is then a whole CPU; a sleeping one is not (it counted
        // as a whole CPU too, and one such boot under CPU hogs cut a rollout to 2 at once).
        var threads = BootBudget(cpus: 2)
        threads.record(cpuSeconds: 0.5, bootSeconds: 1, waitedSeconds: 3)
        #expect(threads.shares == [1] && threads.boots == 2)
        var starved = BootBudget(cpus: 2)
        starved.record(cpuSeconds: 0.02, bootSeconds: 1.5, waitedSeconds: 1.6)
        #expect(starved.boots == 15, "\(starved.shares)")
    }

    @Test func aBootThatMostlyWaitsLetsMoreBootAtOnce() {
        // 190 ms of CPU in a 2.2 s boot (a sleep after loading): 2 / 0.086 = 23 boots.
        var budget = BootBudget(cpus: 2)
        budget.record(cpuSeconds: 0.19, bootSeconds: 2.2)
        #expect(budget.boots == 23)
        // A boot that took no measurable CPU: the per-CPU cap.
        var idle = BootBudget(cpus: 2)
        idle.record(cpuSeconds: 0, bootSeconds: 2)
        #expect(idle.boots == 2 * BootBudget.maxPerCPU)
    }

    @Test func theHeaviestOfTheLastBootsDecides() {
        var budget = BootBudget(cpus: 2)
        budget.record(cpuSeconds: 0.02, bootSeconds: 2)
        budget.record(cpuSeconds: 1, bootSeconds: 2)  // half a CPU: 4 boots
        budget.record(cpuSeconds: 0.02, bootSeconds: 2)
        #expect(budget.boots == 4)
        // Once it is older than the boots remembered, it no longer counts.
        for _ in 0..<BootBudget.remembered { budget.record(cpuSeconds: 0.2, bootSeconds: 2) }
        #expect(budget.boots == 20)
    }

    @Test func aBootOfNoLengthOrGarbageIsIgnored() {
        var budget = BootBudget(cpus: 4)
        budget.record(cpuSeconds: 1, bootSeconds: 0)
        budget.record(cpuSeconds: -1, bootSeconds: 1)
        budget.record(cpuSeconds: .nan, bootSeconds: 1)
        #expect(budget.shares.isEmpty && budget.boots == 4)
    }

    @Test func thePlannerWidensToTheMeasuredBudget() {
        // 1 GiB free, 100 MiB per worker, 3 slots left: 2 CPUs allow 2 boots at once; boots
        // that take 5 % of a CPU allow all three.
        let headroom = Headroom(limits: [HeadroomLimit(kind: .hostAvailable, available: 1 << 30)])
        let figures = RolloutPlanner.Figures(headroom: headroom, footprint: 100 << 20, pending: 3)
        var budget = BootBudget(cpus: 2)
        #expect(RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: budget.boots).step(figures).width == 2)
        budget.record(cpuSeconds: 0.1, bootSeconds: 2)
        #expect(RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: budget.boots).step(figures).width == 3)
    }
}
