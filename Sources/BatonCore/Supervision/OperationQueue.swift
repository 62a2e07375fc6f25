/// What an operation is: a deploy, reload or rollback asked for by a client or a
/// signal, or a replacement the memory side ordered.
public enum OperationKind: String, Sendable, Hashable, CaseIterable, Codable {
    case deploy, reload, rollback
    /// The restart policy replacing one slot.
    case policy
    /// `baton preflight --roll-ahead` replacing the most bloated slots.
    case rollAhead = "roll-ahead"

    /// Deploys and rollbacks refuse each other unless `--wait`; the rest queue.
    public var isDeploy: Bool { self == .deploy || self == .rollback }
}

/// Which operation runs, which wait, and how a new request overlaps them, as a
/// pure state machine: the daemon feeds it requests and lifecycle events and
/// executes the actions it returns; it never asks the machine what to do next.
///
/// The overlap rules (docs/ARCHITECTURE.md, invariant 6):
///
/// | while this runs …  | … this arrives  | result |
/// |---|---|---|
/// | deploy or rollback | deploy/rollback | refused, unless `wait`: queued |
/// | anything           | reload / SIGHUP | queued; joins a reload already queued (one more pass) |
/// | reload             | deploy/rollback | queued behind it |
/// | anything           | policy          | refused (the policy re-evaluates after) |
/// | any operation      | roll-ahead      | refused |
/// | start-up           | any request     | queued until every worker served once (policy refused) |
/// | stopping           | any request     | rejected |
///
/// Nothing is dropped silently: every request ends in exactly one of `start`,
/// `joined`, `refused`, `expired` or `rejected`, each returned as an action.
public struct OperationQueue<ID: Hashable & Sendable>: Sendable {
    /// One request the machine holds.
    public struct Entry: Sendable, Equatable {
        /// The daemon's handle for it.
        public var id: ID
        /// What it is.
        public var kind: OperationKind
        /// The client's deadline (monotonic), counted from the request, queued or not.
        public var deadline: Duration?
    }

    /// What holds a request back.
    public enum Blocker: Sendable, Equatable {
        /// The first start of every worker.
        case startUp
        /// An operation of this kind runs or waits ahead.
        case operation(OperationKind)
    }

    /// Why a request was refused.
    public enum Refusal: Sendable, Equatable {
        /// A deploy or rollback runs or waits, and the request did not ask to wait.
        case deployInProgress(of: ID)
        /// An operation runs or waits (policy, roll-ahead), or start-up is not done.
        case busy(Blocker)
    }

    /// What the daemon does.
    public enum Action: Sendable, Equatable {
        /// Begin this operation now.
        case start(ID)
        /// The request was merged into a queued reload; its client follows that one.
        case joined(ID, into: ID)
        /// Queued; tell the client what it waits for.
        case waiting(ID, behind: Blocker)
        /// Not accepted; reply with the reason.
        case refused(ID, Refusal)
        /// Its deadline passed while it waited; reply "timed out", nothing changed.
        case expired(ID)
        /// baton is stopping: reply with a failure (the running one is interrupted).
        case rejected(ID)
    }

    /// Where the daemon is, as far as operations go.
    public enum Phase: String, Sendable {
        case starting, running, reloading, deploying, restarting, stopping
    }

    private enum State: Sendable {
        /// Workers are booting for the first time; requests wait.
        case startingUp(queued: [Entry])
        /// Serving; nothing runs or waits.
        case idle
        /// One operation runs; others wait in order.
        case busy(running: Entry, queued: [Entry])
        /// SIGTERM: nothing starts any more.
        case stopping
    }

    private var state: State = .startingUp(queued: [])

    /// A machine in start-up (call `startUpFinished()` once every worker served).
    public init() {}

    /// The daemon's phase, derived from the state.
    public var phase: Phase {
        switch state {
        case .startingUp: return .starting
        case .idle: return .running
        case .stopping: return .stopping
        case .busy(let running, _):
            switch running.kind {
            case .reload: return .reloading
            case .deploy, .rollback: return .deploying
            case .policy, .rollAhead: return .restarting
            }
        }
    }

    /// The operation running now, if any.
    public var running: Entry? {
        if case .busy(let running, _) = state { return running }
        return nil
    }

    /// The requests waiting, in the order they will run.
    public var queued: [Entry] {
        switch state {
        case .startingUp(let queued), .busy(_, let queued): return queued
        case .idle, .stopping: return []
        }
    }

    /// Whether an operation runs or waits (or start-up is not done): the restart
    /// policy holds back meanwhile.
    public var isBusy: Bool {
        if case .idle = state { return false }
        return true
    }

    /// A new request. `wait` is the client's `--wait` (deploy and rollback only).
    public mutating func request(_ id: ID, kind: OperationKind, wait: Bool = false, deadline: Duration? = nil) -> [Action] {
        let entry = Entry(id: id, kind: kind, deadline: deadline)
        let queued = self.queued
        let ahead = (running.map { [$0] } ?? []) + queued
        switch state {
        case .stopping:
            return [.rejected(id)]
        case .idle:
            state = .busy(running: entry, queued: [])
            return [.start(id)]
        case .startingUp, .busy:
            let blocker: Blocker = running.map { .operation($0.kind) } ?? queued.last.map { .operation($0.kind) } ?? .startUp
            switch kind {
            case .policy:
                return [.refused(id, .busy(blocker))]
            case .rollAhead:
                // It may wait for start-up, never for another operation.
                guard case .startingUp(let queued) = state, queued.isEmpty else { return [.refused(id, .busy(blocker))] }
            case .reload:
                if let reload = queued.first(where: { $0.kind == .reload }) { return [.joined(id, into: reload.id)] }
            case .deploy, .rollback:
                if !wait, let deploy = ahead.first(where: { $0.kind.isDeploy }) {
                    return [.refused(id, .deployInProgress(of: deploy.id))]
                }
            }
            enqueue(entry)
            return [.waiting(id, behind: blocker)]
        }
    }

    /// Every worker served once: what waited starts.
    public mutating func startUpFinished() -> [Action] {
        guard case .startingUp(let queued) = state else { return [] }
        return startNext(from: queued)
    }

    /// The running operation `id` ended (succeeded, failed, rolled back): the next one starts.
    public mutating func finished(_ id: ID) -> [Action] {
        guard case .busy(let running, let queued) = state, running.id == id else { return [] }
        return startNext(from: queued)
    }

    /// Time passed: queued requests whose deadline is due are dropped, each with an action.
    public mutating func deadlinesDue(now: Duration) -> [Action] {
        let due = queued.filter { $0.deadline.map { $0 <= now } ?? false }
        guard !due.isEmpty else { return [] }
        let keep = queued.filter { entry in !due.contains { $0.id == entry.id } }
        switch state {
        case .startingUp: state = .startingUp(queued: keep)
        case .busy(let running, _): state = .busy(running: running, queued: keep)
        case .idle, .stopping: break
        }
        return due.map { .expired($0.id) }
    }

    /// The earliest deadline of a queued request, for the daemon's timer.
    public var nextDeadline: Duration? { queued.compactMap(\.deadline).min() }

    /// SIGTERM: every request, the running one first, is rejected; nothing starts again.
    public mutating func stop() -> [Action] {
        let all = (running.map { [$0] } ?? []) + queued
        state = .stopping
        return all.map { .rejected($0.id) }
    }

    private mutating func enqueue(_ entry: Entry) {
        switch state {
        case .startingUp(let queued): state = .startingUp(queued: queued + [entry])
        case .busy(let running, let queued): state = .busy(running: running, queued: queued + [entry])
        case .idle, .stopping: break
        }
    }

    private mutating func startNext(from queued: [Entry]) -> [Action] {
        guard let next = queued.first else {
            state = .idle
            return []
        }
        state = .busy(running: next, queued: Array(queued.dropFirst()))
        return [.start(next.id)]
    }
}
