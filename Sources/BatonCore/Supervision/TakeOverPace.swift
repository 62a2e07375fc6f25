/// How a new baton replaces the orphans of a crashed one when memory is tight: pure, so every
/// state is tested without a process.
///
/// Without a limit, the new baton starts every slot's worker beside the orphans and drains them
/// once all are ready (double the workers for a while). On a host near its limit that doubling
/// is what gets the orphans, the only workers serving, killed by the kernel's OOM killer (a
/// memory-pressure audit: at 82 % of a 1 GiB cgroup 2 of 4 orphans, at 94 % all 4). With a
/// limit (`extra`: new workers that fit beside the orphans when the take-over began):
/// - new workers start while fewer than `extra` + (orphans gone) run, so each orphan gone
///   makes room for one more;
/// - an orphan is drained as soon as the workers serving (ready new ones and orphans not told
///   to stop) outnumber the slots: capacity never drops below the slots for it;
/// - when nothing else can move (no room to start, no new worker booting, no orphan draining),
///   one orphan is drained first, as the replace strategy does: its slot's capacity dips for a
///   boot, and its memory makes the room.
public struct TakeOverPace: Sendable, Equatable {
    /// New workers that fit beside the orphans when the take-over began.
    public let extra: Int

    /// A pace allowing `extra` new workers beside the orphans.
    public init(extra: Int) { self.extra = max(0, extra) }

    /// Where the take-over is.
    public struct State: Sendable, Equatable {
        /// Slots to fill.
        public var slots: Int
        /// New workers running (booting or ready).
        public var newRunning: Int
        /// Of them, ready.
        public var newReady: Int
        /// Orphans still serving (not told to stop).
        public var orphansServing: Int
        /// Orphans told to stop, not gone yet.
        public var orphansDraining: Int
        /// Orphans gone since the take-over began.
        public var orphansGone: Int

        /// A state.
        public init(slots: Int, newRunning: Int, newReady: Int, orphansServing: Int, orphansDraining: Int, orphansGone: Int) {
            self.slots = slots
            self.newRunning = newRunning
            self.newReady = newReady
            self.orphansServing = orphansServing
            self.orphansDraining = orphansDraining
            self.orphansGone = orphansGone
        }
    }

    /// What to do now.
    public struct Step: Sendable, Equatable {
        /// New workers that may start now (the start queue's own bound applies too).
        public var start: Int
        /// Orphans to tell to stop now.
        public var drain: Int

        /// A step.
        public init(start: Int, drain: Int) {
            self.start = start
            self.drain = drain
        }
    }

    /// The step for `state`.
    public func step(_ state: State) -> Step {
        let pending = max(0, state.slots - state.newRunning)
        let room = max(0, extra + state.orphansGone - state.newRunning)
        let start = min(pending, room)
        var drain = min(state.orphansServing, max(0, state.newReady + state.orphansServing - state.slots))
        let booting = state.newRunning - state.newReady
        if start == 0, drain == 0, pending > 0, booting == 0, state.orphansDraining == 0, state.orphansServing > 0 {
            drain = 1
        }
        return Step(start: start, drain: drain)
    }
}
