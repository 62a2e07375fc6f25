import BatonCore
import Testing

@Suite("SlotLifecycle")
struct SlotLifecycleTests {
    typealias Life = SlotLifecycle

    @Test func theFirstStartIsNoRestartAndANewWorkerCountsOnlyOncePromoted() {
        var life = Life(index: 2)
        #expect(life.start(role: .current, reason: nil) == 1)
        #expect(life.restarts == 0 && life.lastRestartReason == nil)
        #expect(life.start(role: .current, reason: RestartCause(.crash)) == 2)
        #expect(life.restarts == 1 && life.lastRestartReason == RestartCause(.crash))
        #expect(life.start(role: .replacement, reason: RestartCause(.deploy)) == 3)
        #expect(life.restarts == 1 && life.lastRestartReason == RestartCause(.crash))
        life.promoted(reason: .deploy)
        #expect(life.restarts == 2 && life.lastRestartReason == RestartCause(.deploy))
    }

    @Test func aFailureSchedulesOneRespawnAfterTheDoublingBackoff() {
        var life = Life(index: 0)
        _ = life.start(role: .current, reason: nil)
        #expect(life.failed(.exitedDuringStart, uptime: nil, now: .seconds(10), startAttempts: nil) == .respawn(after: .seconds(1), crashLooping: false))
        #expect(life.respawn == .init(at: .seconds(11), reason: .exitedDuringStart))
        #expect(life.lastRestartReason == .exitedDuringStart)
        #expect(life.failed(RestartCause(.crash), uptime: nil, now: .seconds(12), startAttempts: nil) == .respawn(after: .seconds(2), crashLooping: false))
        #expect(life.respawn == .init(at: .seconds(14), reason: RestartCause(.crash)))
        #expect(life.failed(RestartCause(.crash), uptime: nil, now: .seconds(20), startAttempts: nil) == .respawn(after: .seconds(4), crashLooping: true))
        #expect(life.isCrashLooping && life.consecutiveFailures == 3)
        // A worker that had been up past the stability time starts the count afresh.
        #expect(
            life.failed(RestartCause(.crash), uptime: .seconds(31), now: .seconds(90), startAttempts: nil) == .respawn(after: .seconds(1), crashLooping: false))
    }

    /// A memory audit: 18 OOM kills in 90 s under a fast leak left every slot crash-looping
    /// (backoff 4 s, 11 s), and the memory rules, which wait for every slot to serve, never ran.
    @Test func anOOMKillOfAWorkerThatServedIsReplacedAtOnceAndIsNoCrashLoop() {
        var life = Life(index: 0)
        _ = life.start(role: .current, reason: nil)
        for n in 1...6 {
            #expect(
                life.failed(RestartCause(.oom), uptime: .seconds(3), now: .seconds(10 * n), startAttempts: nil)
                    == .respawn(after: .seconds(1), crashLooping: false))
        }
        #expect(life.consecutiveFailures == 0 && life.lastRestartReason == RestartCause(.oom))
        // Killed while it started (it never served): the backoff, as any failed start.
        _ = life.failed(RestartCause(.oom), uptime: nil, now: .seconds(100), startAttempts: nil)
        #expect(life.failed(RestartCause(.oom), uptime: nil, now: .seconds(101), startAttempts: nil) == .respawn(after: .seconds(2), crashLooping: false))
    }

    @Test func aNewReleasePromotedStartsTheBackoffAfreshAPolicyRestartDoesNot() {
        for (reason, afresh) in [(RestartReason.deploy, true), (.rollback, true), (.reload, true), (.age, false), (.memoryThreshold, false)] {
            var life = Life(index: 1)
            _ = life.start(role: .current, reason: nil)
            for n in 1...3 { _ = life.failed(RestartCause(.crash), uptime: nil, now: .seconds(n), startAttempts: nil) }
            #expect(life.isCrashLooping)
            _ = life.start(role: .replacement, reason: RestartCause(reason))
            life.promoted(reason: reason)
            #expect(life.isCrashLooping != afresh, "\(reason)")
            #expect(life.consecutiveFailures == (afresh ? 0 : 3), "\(reason)")
        }
    }

    @Test(arguments: [1, 3])
    func theStartUpGivesUpAtItsLimitAndOnlyWhenOneApplies(limit: Int) {
        var limited = Life(index: 0)
        var unlimited = Life(index: 0)
        for n in 1...limit {
            let action = limited.failed(RestartCause(.crash), uptime: nil, now: .seconds(n), startAttempts: limit)
            #expect((action == .giveUp) == (n == limit), "failure \(n)")
            #expect(unlimited.failed(RestartCause(.crash), uptime: nil, now: .seconds(n), startAttempts: nil) != .giveUp)
        }
        #expect(limited.respawn == nil)
        #expect(unlimited.respawn != nil)
        var zero = Life(index: 0)
        #expect(zero.failed(RestartCause(.crash), uptime: nil, now: .zero, startAttempts: 0) != .giveUp)
    }

    @Test func aDueRespawnStartsOnlyAnEmptySlotAndIsNoLongerPending() {
        var life = Life(index: 0)
        _ = life.failed(RestartCause(.crash), uptime: nil, now: .zero, startAttempts: nil)
        #expect(life.respawnDue(empty: false) == nil)
        #expect(life.respawn == nil)
        #expect(life.respawnDue(empty: true) == nil, "nothing pending any more")
        _ = life.failed(RestartCause(.oom), uptime: nil, now: .zero, startAttempts: nil)
        #expect(life.respawnDue(empty: true) == RestartCause(.oom))
    }

    @Test func aStartOrACancelDropsThePendingRespawn() {
        var life = Life(index: 0)
        _ = life.failed(RestartCause(.crash), uptime: nil, now: .zero, startAttempts: nil)
        _ = life.start(role: .current, reason: RestartCause(.reload))
        #expect(life.respawn == nil)
        #expect(life.respawnDue(empty: true) == nil)
        _ = life.failed(RestartCause(.crash), uptime: nil, now: .zero, startAttempts: nil)
        life.cancelRespawn()
        #expect(life.respawnDue(empty: true) == nil)
    }

    @Test func theStabilityWindowResetsTheBackoffOnlyForTheWorkerThatOpenedItStillServing() {
        var life = Life(index: 0)
        _ = life.failed(RestartCause(.crash), uptime: nil, now: .zero, startAttempts: nil)
        _ = life.failed(RestartCause(.crash), uptime: nil, now: .zero, startAttempts: nil)
        let g1 = life.start(role: .current, reason: RestartCause(.crash))
        #expect(life.ready(generation: g1, now: .seconds(5)) == .seconds(30))
        #expect(life.stabilityWindow == .init(generation: g1, endsAt: .seconds(35)))
        // Not serving (it exited, or is not ready): no reset, and the window is over.
        let gone = life.stabilityWindowEnded(generation: g1, serving: nil)
        #expect(!gone)
        #expect(life.consecutiveFailures == 2 && life.stabilityWindow == nil)
        // A later ready worker's window replaces the earlier one.
        let g2 = life.start(role: .replacement, reason: nil)
        _ = life.ready(generation: g1, now: .seconds(40))
        _ = life.ready(generation: g2, now: .seconds(41))
        let earlier = life.stabilityWindowEnded(generation: g1, serving: g1)
        #expect(!earlier)
        #expect(life.consecutiveFailures == 2)
        let latest = life.stabilityWindowEnded(generation: g2, serving: g2)
        #expect(latest)
        #expect(life.consecutiveFailures == 0)
    }

    @Test func aCrashOfTheRolloutsWorkerIsOnlyTheLastReason() {
        var life = Life(index: 0)
        _ = life.start(role: .current, reason: nil)
        life.rolloutWorkerCrashed()
        #expect(life.lastRestartReason == RestartCause(.crash))
        #expect(life.consecutiveFailures == 0 && life.respawn == nil && life.restarts == 0)
    }

    @Test func countsCarriedOverByAnUpgradeGoOn() {
        var life = Life(index: 1, generation: 5, restarts: 3, lastRestartReason: RestartCause(.memoryThreshold))
        #expect(life.start(role: .current, reason: RestartCause(.crash)) == 6)
        #expect(life.restarts == 4)
        #expect(life.consecutiveFailures == 0)
    }

    // MARK: - Every sequence

    enum Event: CaseIterable {
        case startCurrent, startCurrentNoReason, startReplacement, promote
        case failStarting, failAfterLongUptime, respawnDueEmpty, respawnDueTaken
        case readyLatest, windowEndsServing, windowEndsGone, cancel

    }

    /// Every sequence of five events from a new slot, with a start-up limit of 3 applying to
    /// every failure: the counts, the backoff, the respawn and the window follow the rules in
    /// `SlotLifecycle`'s documentation, step by step.
    @Test func everySequenceOfFiveEventsFollowsTheRules() {
        let limit = 3
        var sequences = 0
        var violations: [String] = []
        func check(_ ok: Bool, _ path: @autoclosure () -> [Event], _ what: @autoclosure () -> String) {
            if !ok && violations.count < 20 { violations.append("\(what()) after \(path())") }
        }
        // What the rules say the slot holds, counted apart from it.
        struct Expected {
            var starts = 0
            var restarts = 0
            var failures = 0
            var respawnPending = false
            var window: Int? = nil
            var now: Duration = .zero
        }
        func explore(_ life: Life, _ e: Expected, _ path: [Event]) {
            sequences += 1
            guard path.count < 5 else { return }
            for event in Event.allCases {
                var life = life
                var e = e
                let path = path + [event]
                e.now += .seconds(1)
                switch event {
                case .startCurrent, .startCurrentNoReason, .startReplacement:
                    let role: Life.Role = event == .startReplacement ? .replacement : .current
                    let reason: RestartCause? = event == .startCurrentNoReason ? nil : RestartCause(.reload)
                    let before = life.lastRestartReason
                    let g = life.start(role: role, reason: reason)
                    e.starts += 1
                    if e.starts > 1 && role == .current { e.restarts += 1 }
                    e.respawnPending = false
                    check(g == e.starts, path, "generation \(g)")
                    let expectedReason = e.starts > 1 && role == .current && reason != nil ? reason : before
                    check(life.lastRestartReason == expectedReason, path, "reason \(String(describing: life.lastRestartReason))")
                case .promote:
                    life.promoted(reason: .deploy)
                    e.restarts += 1
                    e.failures = 0
                    check(life.lastRestartReason == RestartCause(.deploy), path, "promotion's reason")
                case .failStarting, .failAfterLongUptime:
                    let long = event == .failAfterLongUptime
                    let action = life.failed(RestartCause(.crash), uptime: long ? .seconds(60) : nil, now: e.now, startAttempts: limit)
                    e.failures = long ? 1 : e.failures + 1
                    let delay = CrashBackoff().delay(forFailures: e.failures)
                    if e.failures >= limit {
                        check(action == .giveUp, path, "\(action) at \(e.failures) failures")
                        e.respawnPending = false
                    } else {
                        check(action == .respawn(after: delay, crashLooping: e.failures >= CrashBackoff.crashLoopThreshold), path, "\(action)")
                        check(life.respawn?.at == e.now + delay, path, "respawn at \(String(describing: life.respawn))")
                        e.respawnPending = true
                    }
                    check(life.lastRestartReason == RestartCause(.crash), path, "failure's reason")
                case .respawnDueEmpty, .respawnDueTaken:
                    let empty = event == .respawnDueEmpty
                    let reason = life.respawnDue(empty: empty)
                    check((reason != nil) == (e.respawnPending && empty), path, "respawn due gave \(String(describing: reason))")
                    e.respawnPending = false
                case .readyLatest:
                    guard e.starts > 0 else { continue }
                    check(life.ready(generation: e.starts, now: e.now) == .seconds(30), path, "window length")
                    e.window = e.starts
                case .windowEndsServing, .windowEndsGone:
                    guard let g = e.window else { continue }
                    let serving = event == .windowEndsServing
                    let reset = life.stabilityWindowEnded(generation: g, serving: serving ? g : nil)
                    check(reset == serving, path, "reset \(reset)")
                    if serving { e.failures = 0 }
                    e.window = nil
                case .cancel:
                    life.cancelRespawn()
                    e.respawnPending = false
                }
                check(life.generation == e.starts, path, "generation \(life.generation) vs \(e.starts) starts")
                check(life.restarts == e.restarts, path, "restarts \(life.restarts) vs \(e.restarts)")
                check(life.consecutiveFailures == e.failures, path, "failures \(life.consecutiveFailures) vs \(e.failures)")
                check((life.respawn != nil) == e.respawnPending, path, "respawn \(String(describing: life.respawn))")
                check(life.stabilityWindow?.generation == e.window, path, "window \(String(describing: life.stabilityWindow))")
                explore(life, e, path)
            }
        }
        explore(Life(index: 0), Expected(), [])
        #expect(violations.isEmpty, "\(violations)")
        #expect(sequences > 90_000)
    }
}
