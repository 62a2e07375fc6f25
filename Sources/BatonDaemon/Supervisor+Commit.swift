import BatonCore
import BatonSystem
import Glibc
import Logging

/// What makes an operation's success true: each new worker stays up through its stability
/// window, the new release is persisted before it counts as committed, and a client's
/// deadline counts from its request (queued or not).
extension Supervisor {
    // MARK: - Stability window

    /// A new worker of the rollout became ready: once it has stayed up `[deploy]
    /// stability_window`, the rollout hears that its slot is stable. The timer dies with the
    /// worker (its exit before then fails the rollout instead).
    func watchStability(_ worker: Worker) {
        guard let op = operation, op.phase == .rollingOut, rollout?.awaitsStability == true else { return }
        let window = config.deploy.stabilityWindow
        worker.timers.append(
            loop.schedule(after: window) { [unowned self, unowned worker, weak op] in
                guard let op, self.operation === op, op.phase == .rollingOut, worker.state == .ready else { return }
                self.logger.info(
                    "worker stayed up \(Units.formatDuration(window)) after ready: stable",
                    metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
                op.report("slot \(worker.slot): pid \(worker.pid) stable for \(Units.formatDuration(window))")
                self.rolloutEvent { $0.workerStable(slot: worker.slot) }
            })
    }

    // MARK: - Persistence

    /// Persists `state` as the deploy's commit; throws (nothing changed in memory) when the
    /// state directory cannot take it.
    func commitReleaseState(_ state: ReleaseState) throws {
        guard let store else {
            throw DaemonError("the state directory \(Self.stateDirectory(for: config)) is unusable")
        }
        try store.save(state)
        releaseState = state
        if !stateProblems.isEmpty {
            logger.info("release state persisted: the state directory's earlier problems are resolved")
            stateProblems.removeAll()
        }
    }

    /// A deploy or rollback whose every slot serves the new release but whose release could
    /// not be persisted: it is not committed (a restarted baton would come back on the old
    /// release), so it fails and every slot goes back to the previous release.
    func persistenceFailed(_ op: Operation, error: any Error) {
        let reason = "cannot persist the release in the state directory (\(error)): not committed"
        logger.error("\(op.kind.rawValue) of \(op.target?.directory ?? "?"): \(reason)")
        op.failure = Operation.Failure(reason: reason, output: [], code: 1)
        op.report("\(op.kind.rawValue) failed: \(reason)")
        rollBack(op, slots: slots.map(\.index))
    }

    /// Records a problem of the state directory: an ERROR line in the log and a line in
    /// `baton status` until a release is persisted again.
    func stateProblem(_ line: String) {
        logger.error("\(line)")
        stateProblems.append(line)
    }

    // MARK: - Deadlines

    /// Starts `op`'s client deadline now, at its request: an operation still queued when it
    /// passes is taken out of the queue and answered with exit 4; a running one is aborted
    /// and rolled back (as `deadlinePassed`).
    func startDeadline(_ op: Operation, _ timeout: Duration) {
        op.deadline = loop.schedule(after: timeout) { [unowned self, weak op] in
            guard let op else { return }
            guard let i = self.queue.firstIndex(where: { $0 === op }) else {
                self.deadlinePassed(op, timeout)
                return
            }
            self.queue.remove(at: i)
            let reason =
                "deadline of \(Units.formatDuration(timeout)) passed while it waited for a \(self.operation?.kind.rawValue ?? (self.phase == .starting ? "start-up" : "operation")): not started, nothing changed"
            self.logger.error("\(op.kind.rawValue) of \(op.target?.directory ?? "?"): \(reason)")
            op.finish(.failure("\(op.kind.rawValue) of \(op.target?.directory ?? "?"): \(reason)", code: 4))
        }
    }
}
