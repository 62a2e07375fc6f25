import BatonCore
import Testing

/// The take-over's pace under a memory limit, step by step and over every run of events.
@Suite struct TakeOverPaceTests {
    typealias State = TakeOverPace.State

    @Test func roomForNoneDrainsOneOrphanFirstThenReplacesOneAtATime() {
        let pace = TakeOverPace(extra: 0)
        var s = State(slots: 2, newRunning: 0, newReady: 0, orphansServing: 2, orphansDraining: 0, orphansGone: 0)
        #expect(pace.step(s) == .init(start: 0, drain: 1))
        s.orphansServing = 1
        s.orphansDraining = 1
        #expect(pace.step(s) == .init(start: 0, drain: 0), "wait for its exit")
        s.orphansDraining = 0
        s.orphansGone = 1
        #expect(pace.step(s) == .init(start: 1, drain: 0))
        s.newRunning = 1
        #expect(pace.step(s) == .init(start: 0, drain: 0), "booting")
        s.newReady = 1
        #expect(pace.step(s) == .init(start: 0, drain: 1), "2 serving again: the next orphan goes")
    }

    @Test func roomForSomeStartsThemAndDrainsAsTheyServe() {
        let pace = TakeOverPace(extra: 2)
        var s = State(slots: 4, newRunning: 0, newReady: 0, orphansServing: 4, orphansDraining: 0, orphansGone: 0)
        #expect(pace.step(s) == .init(start: 2, drain: 0))
        s.newRunning = 2
        s.newReady = 2
        #expect(pace.step(s) == .init(start: 0, drain: 2), "6 serving for 4 slots")
        s.orphansServing = 2
        s.orphansDraining = 1
        s.orphansGone = 1
        #expect(pace.step(s) == .init(start: 1, drain: 0))
    }

    /// Each configuration run to its end (a boot ends, or an orphan exits, whenever the step
    /// waits), 1–4 slots and 0–5 of room: never more workers than the slots plus the room, never
    /// fewer serving than the slots but one, and every slot ends on a new worker.
    @Test func eachConfigurationStaysInItsRoomAndFinishes() {
        for slots in 1...4 {
            for extra in 0...5 {
                let pace = TakeOverPace(extra: extra)
                var s = State(slots: slots, newRunning: 0, newReady: 0, orphansServing: slots, orphansDraining: 0, orphansGone: 0)
                var steps = 0
                while s.newReady < slots || s.orphansServing + s.orphansDraining > 0 {
                    steps += 1
                    guard steps < 100 else { break }
                    let step = pace.step(s)
                    s.newRunning += step.start
                    s.orphansServing -= step.drain
                    s.orphansDraining += step.drain
                    // Live workers never exceed the slots plus the room.
                    #expect(s.newRunning + s.orphansServing + s.orphansDraining <= slots + max(extra, 1), "\(slots) \(extra) \(s)")
                    if step.start == 0 && step.drain == 0 {
                        // Something progresses: a boot ends, or an orphan exits.
                        if s.newRunning > s.newReady {
                            s.newReady += 1
                        } else if s.orphansDraining > 0 {
                            s.orphansDraining -= 1
                            s.orphansGone += 1
                        } else {
                            Issue.record("stuck at \(s) with \(extra) of room")
                            break
                        }
                    }
                    #expect(s.newReady + s.orphansServing >= slots - 1, "capacity dips by one slot at most: \(s)")
                }
                #expect(s.newReady == slots && s.orphansServing == 0 && s.orphansDraining == 0, "\(slots) \(extra): \(s)")
            }
        }
    }
}
