/// A rolling replacement of workers, one slot at a time, as a pure state
/// machine: the supervisor feeds it events and executes the actions it returns.
///
/// Invariants: at most one slot is being replaced at a time, so with `surge`
/// there is at most one extra worker and no slot is ever without a serving
/// worker; with `replace` there is never an extra worker and at most one slot
/// is without a serving worker. The first failure ends the rollout: slots not
/// reached yet are never touched.
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
        /// Stop the slot's old worker gracefully (stop signal, then SIGKILL after the timeout).
        case drainOld(slot: Int)
        /// The rollout is over.
        case finished(Outcome)
    }

    /// How a rollout ended.
    public enum Outcome: Sendable, Equatable {
        /// Every slot runs a new worker.
        case succeeded
        /// A new worker failed; `replaced` slots already run new workers.
        case failed(slot: Int, reason: String, replaced: [Int])
    }

    private enum Phase: Sendable, Equatable {
        case idle
        case startingNew(index: Int)
        case drainingOld(index: Int)
        case done(Outcome)
    }

    /// Slots in the order they are replaced.
    public let slots: [Int]
    /// The strategy for every slot.
    public let strategy: Strategy
    private var phase: Phase = .idle

    /// Creates a rollout over `slots` (in that order).
    public init(slots: [Int], strategy: Strategy) {
        self.slots = slots
        self.strategy = strategy
    }

    /// The slot being replaced, if any.
    public var currentSlot: Int? {
        switch phase {
        case .startingNew(let i), .drainingOld(let i): slots[i]
        default: nil
        }
    }

    /// Slots already on the new settings.
    public var replacedSlots: [Int] {
        switch phase {
        case .idle: []
        case .startingNew(let i): Array(slots[..<i])
        case .drainingOld(let i): Array(slots[..<(strategy == .surge ? i + 1 : i)])
        case .done(.succeeded): slots
        case .done(.failed(_, _, let replaced)): replaced
        }
    }

    /// True once `finished` was returned.
    public var isFinished: Bool {
        if case .done = phase { return true }
        return false
    }

    /// Begins the rollout.
    public mutating func start() -> [Action] {
        guard case .idle = phase else { return [] }
        return begin(index: 0)
    }

    private mutating func begin(index: Int) -> [Action] {
        guard index < slots.count else {
            phase = .done(.succeeded)
            return [.finished(.succeeded)]
        }
        switch strategy {
        case .surge:
            phase = .startingNew(index: index)
            return [.startNew(slot: slots[index])]
        case .replace:
            phase = .drainingOld(index: index)
            return [.drainOld(slot: slots[index])]
        }
    }

    /// The new worker of `slot` is ready.
    public mutating func newWorkerReady(slot: Int) -> [Action] {
        guard case .startingNew(let i) = phase, slots[i] == slot else { return [] }
        switch strategy {
        case .surge:
            phase = .drainingOld(index: i)
            return [.drainOld(slot: slot)]
        case .replace:
            return begin(index: i + 1)
        }
    }

    /// The new worker of `slot` failed to become ready (exited, timed out).
    public mutating func newWorkerFailed(slot: Int, reason: String) -> [Action] {
        guard case .startingNew(let i) = phase, slots[i] == slot else { return [] }
        let outcome = Outcome.failed(slot: slot, reason: reason, replaced: Array(slots[..<i]))
        phase = .done(outcome)
        return [.finished(outcome)]
    }

    /// The old worker of `slot` has exited (drained or killed).
    public mutating func oldWorkerExited(slot: Int) -> [Action] {
        guard case .drainingOld(let i) = phase, slots[i] == slot else { return [] }
        switch strategy {
        case .surge:
            return begin(index: i + 1)
        case .replace:
            phase = .startingNew(index: i)
            return [.startNew(slot: slot)]
        }
    }
}
