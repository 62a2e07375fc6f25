import BatonCore
import BatonSystem
import Glibc
import Logging

/// Requests in, the overlap rules' actions out: every deploy, reload, rollback, policy
/// restart and roll-ahead is handed to `operations` (an `OperationQueue`, pure, in
/// BatonCore), and what it answers is carried out here. Nothing here decides which
/// operation runs: the machine does (docs/ARCHITECTURE.md, invariant 6).
extension Supervisor {
    /// A new operation with the next number, asked for now.
    func makeOperation(kind: Operation.Kind, options: DeployOptions?, uid: uid_t?) -> Operation {
        let op = Operation(number: nextOperationNumber, kind: kind, options: options, uid: uid)
        nextOperationNumber += 1
        return op
    }

    /// Hands `op` to the overlap rules and carries out what they say. `timeout` (the
    /// client's deadline) counts from now, whether the operation starts now or waits.
    func submit(_ op: Operation, wait: Bool = false, timeout: Duration? = nil) {
        operationTable[op.number] = op
        if let timeout { startDeadline(op, timeout) }
        performOperations(operations.request(op.number, kind: op.kind, wait: wait))
    }

    /// Executes the overlap rules' actions.
    func performOperations(_ actions: [OperationQueue<Int>.Action]) {
        for action in actions {
            switch action {
            case .start(let number):
                guard let op = operationTable[number] else { continue }
                startOperation(op)
            case .waiting(let number, let blocker):
                if operationTable[number]?.kind == .reload { extendTimeout() }
                // A reload says so too (an operator audit: it was silent while a deploy ran).
                guard let op = operationTable[number], op.kind.isDeploy || op.kind == .reload else { continue }
                for w in op.waiters { w.send(.progress(Self.waitingLine(ahead: Self.describe(blocker), op.kind))) }
            case .joined(let number, let into):
                guard let op = operationTable.removeValue(forKey: number), let queued = operationTable[into] else { continue }
                if let d = op.deadline { loop.cancel(d) }
                for w in op.waiters {
                    queued.waiters.append(w)
                    w.send(.progress("a reload is already queued: this request joins it"))
                }
                logger.info("reload coalesced with the queued one")
            case .refused(let number, let why):
                guard let op = operationTable.removeValue(forKey: number) else { continue }
                if let d = op.deadline { loop.cancel(d) }
                let reason = refusal(op.kind, why)
                // In history and `baton_deploys_total{outcome="refused"}`, which never moved before;
                // and in the log (a CI audit: only "deploy requested" was logged for 210 refusals).
                recordNeverStarted(op, .refused, reason)
                logger.warning("\(op.kind.rawValue) of \(op.releaseDirectory ?? "?"): \(reason)")
                op.finish(.failure(reason, code: 1))
            case .expired(let number):
                guard let op = operationTable.removeValue(forKey: number) else { continue }
                let waited = Units.formatDuration(op.deadlineAt?.after ?? .zero)
                let ahead = operations.running.map { $0.kind.rawValue } ?? (phase == .starting ? "start-up" : "operation")
                let reason = "deadline of \(waited) passed while it waited for a \(ahead): not started, nothing changed"
                let release = op.releaseDirectory ?? "?"
                logger.error("\(op.kind.rawValue) of \(release): \(reason)")
                // In history as timed out (a CI audit: refusals had a line and these none, and
                // `--attach --release` then answered with an older deploy of the release).
                recordNeverStarted(op, .timedOut, reason)
                op.finish(.failure("\(op.kind.rawValue) of \(release): \(reason)", code: 4))
            case .rejected(let number):
                guard let op = operationTable.removeValue(forKey: number) else { continue }
                if let d = op.deadline { loop.cancel(d) }
                // Its commit answers it (commitEndedAtStop).
                if op === committingOperation { continue }
                op.finish(.failure("baton is stopping: \(op.kind.rawValue) not finished"))
            }
        }
    }

    /// The history line of a deploy or rollback that never started (refused, or its deadline
    /// passed in the queue): dated now, with no duration.
    /// A deploy or rollback refused as asked (its release, a rollback with nothing to go back
    /// to, an option out of range): a `refused` line in history, as one refused for another
    /// operation has (a releases audit: only the log had them). Not for a path that could not
    /// name a folder (a control character, longer than PATH_MAX): history would carry it.
    func recordRefusal(kind: Operation.Kind, options: DeployOptions, uid: uid_t, reason: String) {
        if let path = options.release, ControlProtocol.hasControls(path) || path.utf8.count > Int(PATH_MAX) { return }
        let op = makeOperation(kind: kind, options: options, uid: uid)
        if kind == .rollback { op.target = releaseState.previous }
        recordNeverStarted(op, .refused, reason)
    }

    private func recordNeverStarted(_ op: Operation, _ outcome: OperationOutcome, _ reason: String) {
        guard op.kind.isDeploy else { return }
        op.startedAt = loop.now()
        op.startedAtWall = wallClockNow()
        releases.append(historyEntry(op, outcome: outcome, detail: reason))
    }

    /// A slot failed while baton never served: a deploy or rollback waiting may pre-empt the start-up.
    func reportFailingStartUp() {
        if startUpFailing { performOperations(operations.startUpFailing()) }
    }

    /// Starts `op`'s client deadline at its request: an operation still queued when it passes
    /// is dropped and answered with exit 4; a running one is aborted and rolled back.
    private func startDeadline(_ op: Operation, _ timeout: Duration) {
        op.deadlineAt = (loop.now() + timeout, timeout)
        op.deadline = loop.schedule(after: timeout) { [unowned self, weak op] in
            guard let op else { return }
            let actions = self.operations.deadlinePassed(op.number)
            if actions.isEmpty {
                self.deadlinePassed(op, timeout)
            } else {
                self.performOperations(actions)
            }
        }
    }

    private func refusal(_ kind: Operation.Kind, _ why: OperationQueue<Int>.Refusal) -> String {
        switch why {
        case .deployInProgress(let of):
            // The blocker as it is: a rollback, or one still queued (a chaos audit saw "deploy in
            // progress (of R6)" while a reload ran and a rollback, to R1 in the end, waited).
            let blocker = operationTable[of]
            let release = blocker?.releaseDirectory ?? "?"
            let isRollback = blocker?.kind == .rollback
            if let running = operations.running, running.id != of {
                let what = isRollback ? "a rollback is queued" : "a deploy of \(release) is queued"
                return "\(what) (behind a \(running.kind.noun) in progress): refused; use --wait to queue behind it"
            }
            return isRollback
                ? "rollback in progress (to \(release)): refused; use --wait to queue behind it"
                : "deploy in progress (of \(release)): refused; use --wait to queue behind it"
        case .busy(let blocker):
            return "\(kind.rawValue) refused: a \(Self.describe(blocker)) is in progress"
        }
    }

    /// What the overlap rules would answer a `kind` request now, asked of a copy of the queue
    /// (nothing changes): a dry run's second line, and why the real request would be turned
    /// away (nil: it would run). An audit: a dry run during a deploy printed its plan as if
    /// nothing ran, and the real request was then refused.
    func overlapVerdict(_ kind: Operation.Kind, wait: Bool) -> (line: String, turnedAway: String?) {
        var probe = operations
        for action in probe.request(Int.max, kind: kind, wait: wait) {
            switch action {
            case .start: return ("now: nothing else runs or waits: it would start at once", nil)
            case .waiting(_, let blocker):
                let ahead = probe.queued.count - 1 + (probe.running == nil ? 0 : 1)
                return ("now: it would wait: a \(Self.describe(blocker)) is in progress (\(ahead) ahead of it), and be planned again when it starts", nil)
            case .joined: return ("now: it would join the reload already queued", nil)
            case .refused(_, let why):
                let reason = refusal(kind, why)
                return ("now: it would be refused: \(reason)", reason)
            case .expired, .rejected: return ("now: it would be rejected: baton is stopping", "baton is stopping")
            }
        }
        return ("now: it would start at once", nil)
    }

    /// What a client of a queued deploy or rollback hears, and `--attach` when it follows one.
    static func waitingLine(ahead: String, _ kind: Operation.Kind) -> String {
        "waiting: a \(ahead) is in progress; this \(kind.rawValue) runs after it"
    }

    private static func describe(_ blocker: OperationQueue<Int>.Blocker) -> String {
        switch blocker {
        case .startUp: return "start-up"
        case .operation(let kind): return kind.noun
        }
    }
}
