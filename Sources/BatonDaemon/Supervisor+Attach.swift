import BatonCore
import BatonSystem

/// `baton deploy --attach [--release DIR]`: a client that follows a deploy it did not start (a
/// CI job re-run after a cancel), and exits as that deploy's own client does.
extension Supervisor {
    /// `baton deploy --attach`: follow the deploy or rollback in progress, or the first one
    /// queued (behind a reload, say). With none, it answers with the last deploy or rollback
    /// that ran (a refused one never did) and exits as that one's own client did: a CI step
    /// that attaches again after a cancel must not pass on a deploy that failed, nor take a
    /// reload or policy restart that began after it for its outcome (a CI audit: a reload that
    /// failed after the deploy had succeeded failed the re-run).
    ///
    /// With `release` (`--attach --release DIR`) it follows that release's deploy: the one
    /// running, else the first one queued, else it answers with its last line (a refusal
    /// included: exit 1). A CI
    /// job whose own deploy waited behind another job's followed the other one, exited 0, and
    /// its own then failed (a CI audit, 2 of 2).
    func attach(_ waiter: any OperationWaiter, release: String? = nil) {
        if let release {
            attach(waiter, to: release)
            return
        }
        if operation?.kind.isDeploy != true, let queued = queue.first(where: { $0.kind.isDeploy }) {
            waiter.send(.progress(Self.waitingLine(ahead: operation?.kind.noun ?? "start-up", queued.kind)))
            queued.waiters.append(waiter)
            return
        }
        guard let op = operation, op.kind.isDeploy else {
            let now = operation.map { "no deploy in progress (a \($0.kind.noun) is)" } ?? "nothing in progress"
            guard let last = history.last(where: { $0.kind.isDeploy && $0.outcome != .refused }) else {
                waiter.finish(.success("\(now); last: no deploy yet"))
                return
            }
            Self.answer(waiter, "\(now); last: \(Self.describe(last))", as: last)
            return
        }
        follow(op, waiter)
    }

    /// `waiter` follows `op` from its first line.
    private func follow(_ op: Operation, _ waiter: any OperationWaiter) {
        for line in op.progress { waiter.send(.progress(line)) }
        op.waiters.append(waiter)
    }

    /// Answers `waiter` with `line` and the exit the client of `last` got.
    private static func answer(_ waiter: any OperationWaiter, _ line: String, as last: HistoryEntry) {
        switch last.outcome {
        case .succeeded: waiter.finish(.success(line))
        case .timedOut: waiter.finish(.failure(line, code: 4))
        default: waiter.finish(.failure(line, code: 1))
        }
    }

    /// `--attach --release DIR`: the deploy of `release`, running, queued or last in history.
    private func attach(_ waiter: any OperationWaiter, to release: String) {
        // As bytes (`PathKey`): a deploy of `café` is not one of its NFD twin (a re-audit).
        let (named, resolved) = (PathKey(release), PathKey(Self.resolved(release)))
        func isOf(_ directory: String?) -> Bool { directory.map { PathKey($0) == named || PathKey(Self.resolved($0)) == resolved } ?? false }
        if let op = operation, op.kind == .deploy, isOf(op.releaseDirectory) {
            follow(op, waiter)
            return
        }
        if let queued = queue.first(where: { $0.kind == .deploy && isOf($0.releaseDirectory) }) {
            waiter.send(.progress(Self.waitingLine(ahead: operation?.kind.noun ?? "start-up", queued.kind)))
            queued.waiters.append(waiter)
            return
        }
        let now = operation.map { "no deploy of \(release) in progress (a \($0.kind.noun) is)" } ?? "no deploy of \(release) in progress"
        // Its last line, a refusal too: a job whose deploy of it was refused never ran, and an
        // older success of that release is not its (left from stop 49: exit 0 for it).
        guard let last = history.last(where: { $0.kind == .deploy && isOf($0.release) }) else {
            waiter.finish(.failure("\(now), queued or in history", code: 1))
            return
        }
        // A deploy of it that succeeded before another release took over is not this run's: a CI
        // job re-run with --attach after a cancel took that old success for its own, exit 0, with
        // the host on another release (a CI-door audit).
        let current = releaseState.current.directory
        if last.outcome == .succeeded, !isOf(current) {
            waiter.finish(
                .failure("\(now); last: \(Self.describe(last)), but the workers run \(current) since: deploy \(release) again", code: 1))
            return
        }
        Self.answer(waiter, "\(now); last: \(Self.describe(last))", as: last)
    }

    static func describe(_ e: HistoryEntry) -> String {
        "\(e.kind) of \(e.release) \(e.outcome.words)" + (e.detail.map { ": \($0)" } ?? "")
    }
}
