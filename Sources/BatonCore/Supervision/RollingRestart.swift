/// A rolling replacement of workers (a deploy, a reload, a rollback) as a pure
/// state machine: the supervisor feeds it events and executes the actions it
/// returns. The same machine drives every rollout, so deploys, reloads and
/// rollbacks keep the same guarantees.
///
/// Invariants, checked after every event by the tests:
/// - `surge`: a slot's old worker is drained only after its new one is ready,
///   so no slot is ever without a serving worker; at most `maxSurge` slots are
///   in replacement at once, so there are at most `maxSurge` extra workers.
/// - `replace`: at most `maxUnavailable` slots at a time (default 1); each old
///   worker is drained before its new one starts, so there is never an extra
///   worker and at most `maxUnavailable` slots without a serving worker.
/// - The strategy and width can change between steps (``replan(strategy:width:)``):
///   each slot keeps the strategy it started with; slots start only while fewer
///   than the current width are in replacement.
/// - With `canary`, the first slot starts first and no other slot's old worker is drained
///   before the canary is done, or with `awaitsStability` before its new worker serves and is
///   stable (under surge its old worker may still drain): under surge the other slots' new workers may
///   boot beside their old ones meanwhile (within the width) and are promoted once the
///   canary passed, so a rollout takes about one boot, not two; under replace the canary is
///   replaced alone and the others start only after it is done.
/// - The first failure ends the rollout: slots not reached are never touched,
///   and the outcome says which slots need the previous settings back.
/// - With `awaitsStability`, a slot counts as done only once its new worker
///   also stayed up through its stability window (`workerStable`): the
///   canary's window passes before any other slot is promoted, and the rollout
///   succeeds only when every new worker passed its window. A new worker
///   that exits before then fails the rollout like a failed readiness.
public struct RollingRestart: Sendable, Equatable {
    /// How one slot is replaced.
    public enum Strategy: String, Sendable, Equatable, Codable {
        /// Start the new worker, wait until ready, then drain the old one.
        case surge
        /// Drain the old worker, then start the new one.
        case replace
    }

    /// What the supervisor must do.
    public enum Action: Sendable, Equatable {
        /// Start a worker for `slot` with the new settings.
        case startNew(slot: Int)
        /// replace: stop the slot's serving worker gracefully (stop signal, then SIGKILL after
        /// the timeout) before its new one starts.
        case drainOld(slot: Int)
        /// The slot's new worker is ready and serves from now on. surge: the old worker it
        /// displaces drains (as in `drainOld`); replace: the slot had none (it drained first).
        case promote(slot: Int)
        /// Kill the slot's new worker that is still starting (the rollout failed elsewhere).
        case abandonNew(slot: Int)
        /// The rollout is over.
        case finished(Outcome)
    }

    /// How a rollout ended.
    public enum Outcome: Sendable, Equatable {
        /// Every slot runs a new worker.
        case succeeded
        /// A new worker failed (`slot` -1: aborted from outside). `replaced`:
        /// slots that need the previous settings back (they serve a new
        /// worker, or have none serving).
        case failed(slot: Int, reason: String, replaced: [Int])
    }

    /// Where one slot is.
    public enum SlotPhase: Sendable, Equatable {
        /// Not reached yet: the old worker serves.
        case pending
        /// surge: new worker starting beside the serving old one.
        case startingNew
        /// Old worker draining (surge: the new one serves; replace: none serves yet).
        case drainingOld
        /// replace: old worker gone, new one starting; nothing serves.
        case startingAfterDrain
        /// The new worker serves.
        case done
    }

    /// Slots in the order they are replaced (``append(slot:)`` adds to them).
    public private(set) var slots: [Int]
    /// The strategy the rollout started with.
    public let strategy: Strategy
    /// Slots in replacement at once under surge, as the rollout started.
    public let maxSurge: Int
    /// Slots without a serving worker at once under replace, as the rollout started.
    public let maxUnavailable: Int
    /// The strategy given to slots that start from now on.
    public private(set) var stepStrategy: Strategy
    /// Slots in replacement at once from now on.
    public private(set) var stepWidth: Int
    /// The strategy each slot started with (the step's until it starts), by index into `slots`.
    public private(set) var strategies: [Strategy]
    /// Whether the first slot is replaced alone first.
    public let canary: Bool
    /// Whether a slot's new worker must pass its stability window before the slot is done.
    public let awaitsStability: Bool
    /// Phase of each slot, by index into `slots`.
    public private(set) var phases: [SlotPhase]
    private var started = false
    private var outcome: Outcome?
    /// Slots whose new worker passed its stability window.
    private var stable: Set<Int> = []
    /// surge with a canary: slots whose new worker is ready while the canary has not passed.
    /// It serves beside the old one (same listening sockets) and is promoted once it passed.
    private var held: Set<Int> = []

    /// Creates a rollout over `slots` (in that order); with `awaitsStability` each new worker
    /// must also be reported stable (`workerStable`) before its slot is done.
    public init(
        slots: [Int], strategy: Strategy, maxSurge: Int = 1, maxUnavailable: Int = 1, canary: Bool = false, awaitsStability: Bool = false
    ) {
        self.slots = slots
        self.strategy = strategy
        self.maxSurge = max(1, maxSurge)
        self.maxUnavailable = max(1, maxUnavailable)
        self.stepStrategy = strategy
        self.stepWidth = strategy == .surge ? max(1, maxSurge) : max(1, maxUnavailable)
        self.strategies = Array(repeating: strategy, count: slots.count)
        self.canary = canary
        self.awaitsStability = awaitsStability
        self.phases = Array(repeating: .pending, count: slots.count)
    }

    /// Phase of `slot`, if it is part of this rollout.
    public func phase(of slot: Int) -> SlotPhase? {
        slots.firstIndex(of: slot).map { phases[$0] }
    }

    /// The first slot in replacement, if any.
    public var currentSlot: Int? { inFlightSlots.first }

    /// Slots in replacement now.
    public var inFlightSlots: [Int] {
        zip(slots, phases).filter { $0.1 != .pending && $0.1 != .done }.map(\.0)
    }

    /// Slots on the new settings (their new worker serves).
    public var replacedSlots: [Int] {
        slots.indices.filter { phases[$0] == .done || (strategies[$0] == .surge && phases[$0] == .drainingOld) }.map { slots[$0] }
    }

    /// Whether every slot's new worker serves and passed its window (when one is asked), so that
    /// only old workers' drains are left: they say nothing about the new release.
    public var onlyDrainsLeft: Bool {
        outcome == nil && replacedSlots.count == slots.count && slots.allSatisfy(settled)
    }

    /// Slots whose new worker serves and still waits for its stability window to pass.
    public var settlingSlots: [Int] {
        zip(slots, phases).filter { $0.1 == .done && !settled($0.0) }.map(\.0)
    }

    /// True once `finished` was returned.
    public var isFinished: Bool { outcome != nil }

    /// The outcome, once finished.
    public var result: Outcome? { outcome }

    /// Begins the rollout.
    public mutating func start() -> [Action] {
        guard !started else { return [] }
        started = true
        return advance()
    }

    /// From now on, slots start with `strategy`, while fewer than `width` are in replacement
    /// (0: none starts, e.g. while an event is applied before the memory is planned again);
    /// slots in replacement keep theirs. Returns what may start now.
    @discardableResult
    public mutating func replan(strategy: Strategy, width: Int) -> [Action] {
        stepStrategy = strategy
        stepWidth = max(0, width)
        guard started else { return [] }
        return advance()
    }

    /// Adds `slot` to a rollout still running (a recycle joining the restart policy's
    /// operation): pending, it starts when the width allows (on the next ``replan(strategy:width:)``
    /// or event). A slot already part of it may join again only once done (and stable, with
    /// `awaitsStability`). Returns false, changing nothing, otherwise or once finished.
    public mutating func append(slot: Int) -> Bool {
        guard outcome == nil, started else { return false }
        if let i = slots.firstIndex(of: slot) {
            guard phases[i] == .done, settled(slot) else { return false }
            phases[i] = .pending
            stable.remove(slot)
            return true
        }
        slots.append(slot)
        phases.append(.pending)
        strategies.append(stepStrategy)
        return true
    }

    /// The new worker of `slot` is ready.
    public mutating func newWorkerReady(slot: Int) -> [Action] {
        guard outcome == nil, let i = slots.firstIndex(of: slot) else { return [] }
        switch (strategies[i], phases[i]) {
        case (.surge, .startingNew):
            if i != 0, !canaryPassed {
                held.insert(slot)
                return []
            }
            phases[i] = .drainingOld
            return [.promote(slot: slot)] + advance()
        case (.replace, .startingAfterDrain):
            phases[i] = .done
            return [.promote(slot: slot)] + advance()
        default:
            return []
        }
    }

    /// The new worker of `slot` failed: it exited or timed out while starting,
    /// or exited after becoming ready while the rollout still runs.
    public mutating func newWorkerFailed(slot: Int, reason: String) -> [Action] {
        guard outcome == nil, let i = slots.firstIndex(of: slot) else { return [] }
        switch phases[i] {
        case .startingNew, .startingAfterDrain, .drainingOld, .done:
            if strategies[i] == .replace && phases[i] == .drainingOld { return [] }  // no new worker yet
            return fail(slot: slot, index: i, reason: reason)
        case .pending:
            return []
        }
    }

    /// The new worker of `slot` stayed up through its stability window (ignored unless
    /// `awaitsStability`, and before the new worker was ready).
    public mutating func workerStable(slot: Int) -> [Action] {
        guard awaitsStability, outcome == nil, let i = slots.firstIndex(of: slot) else { return [] }
        // surge: the new worker serves from `drainingOld` on; replace: only once `done`.
        let serving = phases[i] == .done || (strategies[i] == .surge && phases[i] == .drainingOld) || held.contains(slot)
        guard serving, !stable.contains(slot) else { return [] }
        stable.insert(slot)
        return advance()
    }

    /// The old worker of `slot` has exited (drained or killed).
    public mutating func oldWorkerExited(slot: Int) -> [Action] {
        guard outcome == nil, let i = slots.firstIndex(of: slot), phases[i] == .drainingOld else { return [] }
        switch strategies[i] {
        case .surge:
            phases[i] = .done
            return advance()
        case .replace:
            phases[i] = .startingAfterDrain
            return [.startNew(slot: slot)]
        }
    }

    /// Ends the rollout from outside (a deadline, a shutdown): every new
    /// worker still starting is abandoned. The outcome's slot is -1.
    public mutating func abort(reason: String) -> [Action] {
        guard outcome == nil else { return [] }
        return fail(slot: -1, index: -1, reason: reason)
    }

    private mutating func fail(slot: Int, index: Int, reason: String) -> [Action] {
        var actions: [Action] = []
        var needsPrevious: [Int] = []
        for (j, s) in slots.enumerated() {
            switch phases[j] {
            case .pending:
                break
            case .startingNew:
                // surge: the old worker still serves; only the new one goes.
                if s != slot { actions.append(.abandonNew(slot: s)) }
            case .drainingOld:
                // surge: the new worker serves; replace: none will serve.
                needsPrevious.append(s)
            case .startingAfterDrain:
                if s != slot { actions.append(.abandonNew(slot: s)) }
                needsPrevious.append(s)
            case .done:
                needsPrevious.append(s)
            }
        }
        let result = Outcome.failed(slot: slot, reason: reason, replaced: needsPrevious)
        outcome = result
        return actions + [.finished(result)]
    }

    /// Starts what may start now, or finishes.
    private mutating func advance() -> [Action] {
        guard outcome == nil else { return [] }
        if zip(slots, phases).allSatisfy({ $0.1 == .done && settled($0.0) }) {
            outcome = .succeeded
            return [.finished(.succeeded)]
        }
        var actions: [Action] = []
        let passed = canaryPassed
        if passed, !held.isEmpty {
            for i in slots.indices where held.contains(slots[i]) && phases[i] == .startingNew {
                phases[i] = .drainingOld
                actions.append(.promote(slot: slots[i]))
            }
            held.removeAll()
        }
        // Until the canary passed: under surge the others boot beside their old workers (slot
        // 0 is first in the loop); under replace the canary is replaced alone, and once it
        // serves nothing else starts until its window passed.
        let speculative = stepStrategy == .surge && (phases[0] == .pending || strategies[0] == .surge)
        if canary, !passed, !speculative, phases[0] == .done { return actions }
        let limit = canary && !passed && !speculative ? 1 : stepWidth
        var busy = inFlightSlots.count
        for i in phases.indices where phases[i] == .pending && busy < limit {
            busy += 1
            strategies[i] = stepStrategy
            switch stepStrategy {
            case .surge:
                phases[i] = .startingNew
                actions.append(.startNew(slot: slots[i]))
            case .replace:
                phases[i] = .drainingOld
                actions.append(.drainOld(slot: slots[i]))
            }
        }
        return actions
    }

    /// Whether other slots may be promoted: no canary; or, with `awaitsStability`, its new
    /// worker serves and passed its window (under surge its old worker may still drain: the drain
    /// says nothing about the new release, and a slow one, long requests up to the stop timeout,
    /// would hold every other slot); without, its slot is done (the drain is the only time the
    /// new worker is watched alone).
    private var canaryPassed: Bool {
        guard canary, let first = slots.first else { return true }
        guard awaitsStability else { return phases[0] == .done }
        let serving = phases[0] == .done || (strategies[0] == .surge && phases[0] == .drainingOld)
        return serving && settled(first)
    }

    /// Whether `slot`'s new worker needs no more waiting (passed its window, or none is asked).
    private func settled(_ slot: Int) -> Bool { !awaitsStability || stable.contains(slot) }
}
