import BatonCore
import Testing

private let mib: UInt64 = 1 << 20

/// Headroom of `free` MiB under the host limit.
private func free(_ megabytes: Int64) -> Headroom {
    Headroom(limits: [HeadroomLimit(kind: .hostAvailable, available: megabytes << 20)])
}

@Suite("RolloutPlanner")
struct RolloutPlannerTests {
    private let auto = RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: 2)

    @Test func autoWidensToWhatFitsWithinTheBootBudget() {
        // 1 GiB free, 100 MiB per worker: 10 fit, 2 boots at once.
        let step = auto.step(.init(headroom: free(1024), footprint: 100 * mib))
        #expect(step.strategy == .surge && step.width == 2, "\(step)")
        let wide = RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: 8).step(.init(headroom: free(1024), footprint: 100 * mib))
        #expect(wide.strategy == .surge && wide.width == 8)
        // Memory binds before the boot budget: 250 MiB for 100 MiB workers is 2.
        let tight = RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: 8).step(.init(headroom: free(250), footprint: 100 * mib))
        #expect(tight.strategy == .surge && tight.width == 2, "\(tight)")
        // Only the slots left are looked for.
        #expect(auto.step(.init(headroom: free(1024), footprint: mib, pending: 3)).reason == "auto: 3 more fit, 2 boots at once")
        // A fixed width is what bounds it then (a reload audit: `max_surge = 1` planned
        // `1 slot at once (auto: 2 more fit, 32 boots at once)`).
        let one = RolloutPlanner(strategy: .auto, maxSurge: .fixed(1), bootBudget: 32).step(.init(headroom: free(250), footprint: 100 * mib))
        #expect(one.width == 1 && one.reason == "auto: 2 more fit, max_surge 1", "\(one)")
    }

    /// A limits audit: `LimitNOFILE=48`, 6 workers, 32 descriptors open, one listening socket:
    /// `--max-surge 2` succeeded and 3 failed at the third spawn.
    @Test func batonsDescriptorsBoundTheWidth() {
        let audit = DescriptorRoom(open: 32, limit: 48, listeners: 1)
        let full0 = DescriptorRoom(open: 38, limit: 48, listeners: 1)
        #expect(audit.workers == 2)
        #expect(DescriptorRoom(open: 32, limit: 48, listeners: 1, unstarted: 1).workers == 1)
        #expect(DescriptorRoom(open: 37, limit: 48, listeners: 1).workers == 1)
        #expect(DescriptorRoom(open: 38, limit: 48, listeners: 1).workers == 0)
        #expect(DescriptorRoom(open: 100, limit: 48, listeners: 1).workers == 0)
        // A replace gives a drained worker's 3 back first: 40 open of 48 still starts one; 41 not.
        #expect(DescriptorRoom(open: 40, limit: 48, listeners: 1).canReplace)
        #expect(!DescriptorRoom(open: 41, limit: 48, listeners: 1).canReplace)
        let wide = RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: 8)
        let bound = wide.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: audit))
        #expect(bound.strategy == .surge && bound.width == 2)
        #expect(bound.reason == "auto: 10 more fit, 8 boots at once, descriptors for 2 more (32 of 48 descriptors open)", "\(bound.reason)")
        // Room to spare: the reason does not mention them.
        let roomy = wide.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: DescriptorRoom(open: 32, limit: 1024, listeners: 1)))
        #expect(roomy.width == 8 && roomy.reason == "auto: 10 more fit, 8 boots at once")
        // A fixed width in auto is a bound too; "surge" as wide as fits follows them as well.
        let fixed = RolloutPlanner(strategy: .auto, maxSurge: .fixed(6), bootBudget: 8)
        #expect(fixed.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: audit)).width == 2)
        let surge = RolloutPlanner(strategy: .surge, maxSurge: .auto, bootBudget: 8)
        #expect(surge.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: audit)).width == 2)
        // A re-audit: `--strategy surge --max-surge 3` with descriptors for 1 more started 3 and
        // failed at the second spawn (`placing descriptors: Too many open files`).
        let asked = RolloutPlanner(strategy: .surge, maxSurge: .fixed(3), bootBudget: 8)
        let one = DescriptorRoom(open: 37, limit: 48, listeners: 1)
        let bounded = asked.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: one))
        #expect(bounded.strategy == .surge && bounded.width == 1, "\(bounded)")
        #expect(bounded.reason == "requested, descriptors for 1 more (37 of 48 descriptors open)", "\(bounded.reason)")
        #expect(asked.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: audit)).width == 2)
        let waits = asked.step(.init(headroom: free(1024), footprint: 100 * mib, inFlight: 1, booting: 1, descriptors: full0))
        #expect(waits.holds && waits.width == 1, "\(waits)")
        // None: replace, or hold while slots are in flight.
        let full = full0
        let none = wide.step(.init(headroom: free(1024), footprint: 100 * mib, descriptors: full))
        #expect(none.strategy == .replace && none.width == 1)
        #expect(none.reason == "auto: baton's descriptors leave no room for an extra worker (38 of 48 descriptors open)")
        let held = wide.step(.init(headroom: free(1024), footprint: 100 * mib, inFlight: 2, booting: 2, descriptors: full))
        #expect(held.holds && held.width == 2, "\(held)")
    }

    @Test func autoFallsBackToReplaceWhenNoWorkerFits() {
        let step = auto.step(.init(headroom: free(99), footprint: 100 * mib))
        #expect(step.strategy == .replace && step.width == 1)
        #expect(step.reason.hasPrefix("auto: a surge of one does not fit: need 100.0 MiB"), "\(step.reason)")
        let budget = RolloutPlanner(strategy: .auto, maxSurge: .auto, maxUnavailable: 2, bootBudget: 2)
        let over = budget.step(.init(headroom: free(-5), footprint: 100 * mib))
        #expect(over.strategy == .replace && over.width == 2)
    }

    @Test func bootingWorkersAreDeductedAndInFlightSlotsKept() {
        // 300 MiB free, one new worker booting (not counted in the headroom yet): 2 more fit,
        // but the boot budget of 2 has room for one more.
        let step = auto.step(.init(headroom: free(300), footprint: 100 * mib, inFlight: 1, booting: 1))
        #expect(step.strategy == .surge && step.width == 2, "\(step)")
        // Boot budget full: the in-flight slots go on, none starts.
        let full = auto.step(.init(headroom: free(1024), footprint: 100 * mib, inFlight: 2, booting: 2))
        #expect(full.strategy == .surge && full.width == 2)
        // Memory gone while two slots are in flight: hold them (start nothing) until one is done.
        let gone = auto.step(.init(headroom: free(150), footprint: 100 * mib, inFlight: 2, booting: 2))
        #expect(gone.holds && gone.width == 2 && gone.reason == "auto: no more fit until a slot in flight is done")
    }

    @Test func replaceUntilTheReclaimedHeadroomAllowsSurge() {
        // The deploy starts tight; the first drained worker gives back its memory.
        #expect(auto.step(.init(headroom: free(50), footprint: 100 * mib)).strategy == .replace)
        let after = auto.step(.init(headroom: free(180), footprint: 100 * mib, inFlight: 0))
        #expect(after.strategy == .surge && after.width == 1)
    }

    @Test func fixedWidthCapsAndExplicitStrategiesWin() {
        let two = RolloutPlanner(strategy: .auto, maxSurge: .fixed(2), bootBudget: 8)
        #expect(two.step(.init(headroom: free(1024), footprint: 100 * mib)).width == 2)
        #expect(two.step(.init(headroom: free(150), footprint: 100 * mib)).width == 1)
        #expect(two.step(.init(headroom: free(10), footprint: 100 * mib)).strategy == .replace)
        let surge = RolloutPlanner(strategy: .surge, maxSurge: .fixed(3), bootBudget: 1)
        #expect(surge.step(.init(headroom: free(1024), footprint: 100 * mib)) == .init(strategy: .surge, width: 3, reason: "requested"))
        // Surge asked for where it does not fit: it runs as asked, and the line says so (a
        // memory-pressure audit: "surge, 1 slot at once (requested, as wide as fits)" with no
        // word of the room, after preflight had said it does not fit; 6 OOM kills followed).
        let tight = surge.step(.init(headroom: free(10), footprint: 100 * mib))
        #expect(tight.width == 3 && tight.reason.hasPrefix("requested; memory has room for 0 more: 3 more does not fit: need "), "\(tight.reason)")
        // Surge asked for, width auto: at least one even when nothing fits.
        let surgeAuto = RolloutPlanner(strategy: .surge, maxSurge: .auto, bootBudget: 4)
        let one = surgeAuto.step(.init(headroom: free(10), footprint: 100 * mib))
        #expect(one.width == 1 && one.reason.hasPrefix("requested, as wide as fits; memory has room for 0 more: 1 more does not fit: "), "\(one.reason)")
        #expect(surgeAuto.step(.init(headroom: free(1024), footprint: 100 * mib)).width == 4)
        let replace = RolloutPlanner(strategy: .replace, maxSurge: .auto, maxUnavailable: 3, bootBudget: 1)
        #expect(replace.step(.init(headroom: free(1024), footprint: 100 * mib)) == .init(strategy: .replace, width: 3, reason: "requested"))
    }

    @Test func unknownFiguresAreConservative() {
        #expect(auto.step(.init(headroom: nil, footprint: nil)) == .init(strategy: .surge, width: 1, reason: "auto: memory unknown"))
        let unknown = auto.step(.init(headroom: free(1024), footprint: nil))
        #expect(unknown.strategy == .replace && unknown.reason == "auto: the worker footprint is unknown")
        // Bounds: width and unavailability at least 1.
        let clamped = RolloutPlanner(strategy: .replace, maxSurge: .fixed(0), maxUnavailable: 0, bootBudget: 0)
        #expect(clamped.maxSurge == .fixed(1) && clamped.maxUnavailable == 1 && clamped.bootBudget == 1)
    }

    @Test func theCommitLimitCountsUnderStrictOvercommit() {
        let headroom = Headroom(limits: [
            HeadroomLimit(kind: .hostAvailable, available: 4096 << 20), HeadroomLimit(kind: .commitLimit, available: 250 << 20),
        ])
        // 100 MiB of PSS but 120 MiB of commit per worker: 2 fit under the commit limit.
        let planner = RolloutPlanner(strategy: .auto, maxSurge: .auto, bootBudget: 8)
        #expect(planner.step(.init(headroom: headroom, footprint: 100 * mib, commitPerWorker: 120 * mib)).width == 2)
    }
}

@Suite("RollingRestart replanned per step")
struct RollingRestartReplanTests {
    @Test func replaceThenSurgeKeepsEachSlotsStrategy() {
        var r = RollingRestart(slots: [0, 1, 2, 3], strategy: .replace, canary: false)
        #expect(r.start() == [.drainOld(slot: 0)])
        #expect(r.oldWorkerExited(slot: 0) == [.startNew(slot: 0)])
        // Memory came back: the rest surges, three slots in flight at once; slot 0 stays a replace.
        #expect(r.replan(strategy: .surge, width: 3) == [.startNew(slot: 1), .startNew(slot: 2)])
        #expect(r.newWorkerReady(slot: 0) == [.promote(slot: 0), .startNew(slot: 3)])
        #expect(r.strategies == [.replace, .surge, .surge, .surge])
        #expect(r.newWorkerReady(slot: 1) == [.promote(slot: 1)])
        #expect(r.replacedSlots == [0, 1])
        #expect(r.oldWorkerExited(slot: 1) == [])
        #expect(r.newWorkerReady(slot: 2) == [.promote(slot: 2)])
        #expect(r.newWorkerReady(slot: 3) == [.promote(slot: 3)])
        #expect(r.oldWorkerExited(slot: 2) == [] && r.oldWorkerExited(slot: 3) == [.finished(.succeeded)])
    }

    @Test func narrowingStartsNothingUntilBelowTheWidth() {
        var r = RollingRestart(slots: [0, 1, 2, 3], strategy: .surge, maxSurge: 3)
        #expect(r.start() == [.startNew(slot: 0), .startNew(slot: 1), .startNew(slot: 2)])
        #expect(r.replan(strategy: .replace, width: 1) == [])
        #expect(r.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(r.oldWorkerExited(slot: 0) == [])
        #expect(r.newWorkerReady(slot: 1) == [.promote(slot: 1)])
        #expect(r.oldWorkerExited(slot: 1) == [])
        #expect(r.newWorkerReady(slot: 2) == [.promote(slot: 2)])
        // The last in-flight slot done: slot 3 goes by replace.
        #expect(r.oldWorkerExited(slot: 2) == [.drainOld(slot: 3)])
        #expect(r.phase(of: 3) == .drainingOld && r.replacedSlots == [0, 1, 2])
        #expect(r.oldWorkerExited(slot: 3) == [.startNew(slot: 3)])
        #expect(r.newWorkerReady(slot: 3) == [.promote(slot: 3), .finished(.succeeded)])
    }

    @Test func widthZeroHoldsEveryStartButStillFinishes() {
        var r = RollingRestart(slots: [0, 1], strategy: .surge, maxSurge: 1)
        #expect(r.start() == [.startNew(slot: 0)])
        r.replan(strategy: .surge, width: 0)
        #expect(r.newWorkerReady(slot: 0) == [.promote(slot: 0)])
        #expect(r.oldWorkerExited(slot: 0) == [])
        // Planned again after the event: slot 1 starts.
        #expect(r.replan(strategy: .surge, width: 1) == [.startNew(slot: 1)])
        r.replan(strategy: .surge, width: 0)
        #expect(r.newWorkerReady(slot: 1) == [.promote(slot: 1)])
        #expect(r.oldWorkerExited(slot: 1) == [.finished(.succeeded)])
    }

    @Test func replaceWithMaxUnavailableTwo() {
        var r = RollingRestart(slots: [0, 1, 2], strategy: .replace, maxUnavailable: 2, canary: true)
        #expect(r.start() == [.drainOld(slot: 0)])
        #expect(r.oldWorkerExited(slot: 0) == [.startNew(slot: 0)])
        #expect(r.newWorkerReady(slot: 0) == [.promote(slot: 0), .drainOld(slot: 1), .drainOld(slot: 2)])
        // A failure: both slots without a serving worker need the previous settings back.
        #expect(r.oldWorkerExited(slot: 1) == [.startNew(slot: 1)])
        #expect(
            r.newWorkerFailed(slot: 1, reason: "exit 1") == [.finished(.failed(slot: 1, reason: "exit 1", replaced: [0, 1, 2]))])
    }
}

@Suite("[deploy] max_surge and max_unavailable")
struct SurgeWidthConfigTests {
    @Test func autoIsTheDefaultAndNumbersStillCount() throws {
        let defaults = try parseConfig(minimalApp)
        #expect(defaults.deploy.surgeWidth == .auto && defaults.deploy.maxSurge == 1 && defaults.deploy.maxUnavailable == 1)
        let auto = try parseConfig(minimalApp + "[deploy]\nmax_surge = \"auto\"\nmax_unavailable = 2\n")
        #expect(auto.deploy.surgeWidth == .auto && auto.deploy.maxUnavailable == 2)
        let fixed = try parseConfig(minimalApp + "[deploy]\nmax_surge = 3\n")
        #expect(fixed.deploy.surgeWidth == .fixed(3) && fixed.deploy.maxSurge == 3)
    }

    @Test func badValuesNameTheKeyAndLine() {
        #expect(
            configFailure(minimalApp + "[deploy]\nmax_surge = \"wide\"\n")
                == #"/etc/baton/shop.toml:7: deploy.max_surge: expected "auto" or an integer, got "wide""#)
        #expect(configFailure(minimalApp + "[deploy]\nmax_surge = 0\n") == #"/etc/baton/shop.toml:7: deploy.max_surge: must be "auto" or at least 1, got 0"#)
        #expect(configFailure(minimalApp + "[deploy]\nmax_unavailable = 0\n") == "/etc/baton/shop.toml:7: deploy.max_unavailable: must be at least 1, got 0")
    }
}
