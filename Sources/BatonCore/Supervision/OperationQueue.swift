/// What an operation is: a deploy, reload or rollback asked for by a client or a
/// signal, or a replacement the memory side ordered.
public enum OperationKind: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case deploy, reload, rollback
    /// The restart policy replacing one slot.
    case policy
    /// `baton preflight --roll-ahead` replacing the most bloated slots.
    case rollAhead = "roll-ahead"

    /// Deploys and rollbacks refuse each other unless `--wait`; the rest queue.
    public var isDeploy: Bool { self == .deploy || self == .rollback }

    /// Whether `[deploy] canary` gates it: every operation that may start workers another way
    /// (a release, or a reload's re-read config). A docs audit: a reload drained two of three
    /// slots 50 ms in, before the canary's window passed, so a config that breaks the app took
    /// every slot before anything failed.
    public var hasCanary: Bool { isDeploy || self == .reload }

    /// Its name on the wire and in messages (`roll-ahead`, not the case name).
    public var description: String { rawValue }

    /// In a sentence: `a policy restart is in progress` (an audit read "a policy is").
    public var noun: String { self == .policy ? "policy restart" : rawValue }
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
/// | failing start-up   | deploy/rollback | starts at once: a good release is what fixes it |
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
        /// Its client's deadline passed while it waited; reply "timed out", nothing changed.
        case expired(ID)
        /// baton is stopping: reply with a failure (the running one is interrupted).
        case rejected(ID)
    }

    /// Where the daemon is, as far as operations go.
    public enum Phase: String, Sendable {
        case starting, running, reloading, deploying, restarting, stopping
    }

    private enum State: Sendable {
        /// Workers are booting for the first time; requests wait, except a deploy or rollback
        /// once the start-up is `failing` (a slot failed and no worker serves there).
        case startingUp(queued: [Entry], failing: Bool)
        /// Serving; nothing runs or waits.
        case idle
        /// One operation runs; others wait in order. `duringStartUp`: it pre-empted a failing
        /// start-up, which goes on when it ends.
        case busy(running: Entry, queued: [Entry], duringStartUp: Bool)
        /// SIGTERM: nothing starts any more.
        case stopping
    }

    private var state: State = .startingUp(queued: [], failing: false)

    /// A machine in start-up (call `startUpFinished()` once every worker served).
    public init() {}

    /// The daemon's phase, derived from the state.
    public var phase: Phase {
        switch state {
        case .startingUp: return .starting
        case .idle: return .running
        case .stopping: return .stopping
        case .busy(let running, _, _):
            switch running.kind {
            case .reload: return .reloading
            case .deploy, .rollback: return .deploying
            case .policy, .rollAhead: return .restarting
            }
        }
    }

    /// The operation running now, if any.
    public var running: Entry? {
        if case .busy(let running, _, _) = state { return running }
        return nil
    }

    /// The requests waiting, in the order they will run.
    public var queued: [Entry] {
        switch state {
        case .startingUp(let queued, _), .busy(_, let queued, _): return queued
        case .idle, .stopping: return []
        }
    }

    /// Whether the running operation pre-empted a failing start-up (which goes on after it).
    public var preemptsStartUp: Bool {
        if case .busy(_, _, true) = state { return true }
        return false
    }

    /// Whether an operation runs or waits (or start-up is not done): the restart
    /// policy holds back meanwhile.
    public var isBusy: Bool {
        if case .idle = state { return false }
        return true
    }

    /// A new request. `wait` is the client's `--wait` (deploy and rollback only).
    public mutating func request(_ id: ID, kind: OperationKind, wait: Bool = false) -> [Action] {
        let entry = Entry(id: id, kind: kind)
        let queued = self.queued
        let ahead = (running.map { [$0] } ?? []) + queued
        switch state {
        case .stopping:
            return [.rejected(id)]
        case .idle:
            state = .busy(running: entry, queued: [], duringStartUp: false)
            return [.start(id)]
        case .startingUp, .busy:
            let blocker: Blocker = running.map { .operation($0.kind) } ?? queued.last.map { .operation($0.kind) } ?? .startUp
            switch kind {
            case .policy:
                return [.refused(id, .busy(blocker))]
            case .rollAhead:
                // It may wait for start-up, never for another operation.
                guard case .startingUp(let queued, _) = state, queued.isEmpty else { return [.refused(id, .busy(blocker))] }
            case .reload:
                if let reload = queued.first(where: { $0.kind == .reload }) { return [.joined(id, into: reload.id)] }
            case .deploy, .rollback:
                if !wait, let deploy = ahead.first(where: { $0.kind.isDeploy }) {
                    return [.refused(id, .deployInProgress(of: deploy.id))]
                }
                if case .startingUp(let queued, true) = state, !queued.contains(where: { $0.kind.isDeploy }) {
                    state = .busy(running: entry, queued: queued, duringStartUp: true)
                    return [.start(id)]
                }
            }
            enqueue(entry)
            return [.waiting(id, behind: blocker)]
        }
    }

    /// Every worker served once: what waited starts.
    public mutating func startUpFinished() -> [Action] {
        switch state {
        case .startingUp(let queued, _): return startNext(from: queued)
        case .busy(let running, let queued, true):
            state = .busy(running: running, queued: queued, duringStartUp: false)
            return []
        case .busy, .idle, .stopping: return []
        }
    }

    /// A slot failed to start while baton never served: the first deploy or rollback waiting
    /// (ahead of a queued reload) starts now, and later ones will not wait for the start-up.
    public mutating func startUpFailing() -> [Action] {
        guard case .startingUp(var queued, _) = state else { return [] }
        guard let first = queued.firstIndex(where: { $0.kind.isDeploy }) else {
            state = .startingUp(queued: queued, failing: true)
            return []
        }
        let entry = queued.remove(at: first)
        state = .busy(running: entry, queued: queued, duringStartUp: true)
        return [.start(entry.id)]
    }

    /// The running operation `id` ended (succeeded, failed, rolled back): the next one starts,
    /// or, after one that pre-empted a start-up, the start-up goes on.
    public mutating func finished(_ id: ID) -> [Action] {
        guard case .busy(let running, let queued, let duringStartUp) = state, running.id == id else { return [] }
        if duringStartUp {
            state = .startingUp(queued: queued, failing: false)
            return []
        }
        return startNext(from: queued)
    }

    /// The client's deadline of `id` passed. A queued request is dropped (`expired`); for the
    /// running one nothing is returned (the daemon aborts its rollout).
    public mutating func deadlinePassed(_ id: ID) -> [Action] {
        guard queued.contains(where: { $0.id == id }) else { return [] }
        let keep = queued.filter { $0.id != id }
        switch state {
        case .startingUp(_, let failing): state = .startingUp(queued: keep, failing: failing)
        case .busy(let running, _, let duringStartUp): state = .busy(running: running, queued: keep, duringStartUp: duringStartUp)
        case .idle, .stopping: break
        }
        return [.expired(id)]
    }

    /// SIGTERM: every request, the running one first, is rejected; nothing starts again.
    public mutating func stop() -> [Action] {
        let all = (running.map { [$0] } ?? []) + queued
        state = .stopping
        return all.map { .rejected($0.id) }
    }

    private mutating func enqueue(_ entry: Entry) {
        switch state {
        case .startingUp(let queued, let failing): state = .startingUp(queued: queued + [entry], failing: failing)
        case .busy(let running, let queued, let duringStartUp): state = .busy(running: running, queued: queued + [entry], duringStartUp: duringStartUp)
        case .idle, .stopping: break
        }
    }

    private mutating func startNext(from queued: [Entry]) -> [Action] {
        guard let next = queued.first else {
            state = .idle
            return []
        }
        state = .busy(running: next, queued: Array(queued.dropFirst()), duringStartUp: false)
        return [.start(next.id)]
    }
}
