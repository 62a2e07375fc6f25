import BatonCore
import BatonSystem
import Glibc

extension Supervisor {
    /// `baton status`: every worker's process tree measured now (PSS/USS from
    /// smaps_rollup) on a thread of its own, then `reply` with the snapshot, on
    /// the loop. A status of hundreds of large workers walks their page tables
    /// without holding the loop.
    func requestStatus(_ reply: @escaping (StatusSnapshot) -> Void) {
        let pids = liveWorkerPIDs + moldPIDs
        let ksm = config.memory.mergeable
        loop.offload({ [reader = host.memory] in MemoryMonitor.read(pids, detailed: true, ksm: ksm, with: reader) }) { [unowned self] readings in
            reply(self.statusSnapshot(memory: readings))
        }
    }

    /// The status report with each worker's tree memory from `memory` (by pid).
    func statusReport(memory trees: [pid_t: MemorySample]) -> StatusReport {
        statusSnapshot(memory: trees).report()
    }

    /// The values of a status now, with each worker's tree memory from `memory` (by pid).
    func statusSnapshot(memory trees: [pid_t: MemorySample]) -> StatusSnapshot {
        let now = loop.now()
        let slotRows = slots.map { slot in
            StatusSnapshot.Slot(
                index: slot.index, release: slot.spec.release, generation: slot.generation, restarts: slot.restarts,
                lastRestartReason: slot.lastRestartReason, consecutiveFailures: slot.backoff.consecutiveFailures,
                crashLoop: slot.backoff.isCrashLooping, nextStartIn: slot.respawnAt.map { Self.seconds($0 - now) },
                workers: slot.workers.map { worker in
                    let leak = worker.history.leakRate
                    let toLimit = config.memory.workerLimit.flatMap { limit in leak?.timeToReach(limit, from: now) }
                    return StatusSnapshot.Worker(
                        pid: worker.pid, state: worker.state.rawValue, release: worker.spec.release, generation: worker.generation,
                        startedAtWall: worker.startedAtWall, readyAfter: worker.readyAt.map { Self.seconds($0 - worker.startedAt) },
                        memory: trees[worker.pid], statusText: worker.statusText, requests: worker.requestsServed,
                        requestLimit: requestRecycler.maxRequests > 0 ? requestRecycler.limit(pid: worker.pid) : nil,
                        leakMiBPerHour: leak?.mibPerHour, secondsToLimit: toLimit.map(Self.seconds))
                })
        }
        let operationStatus = operation.map { op in
            OperationStatus(
                kind: op.kind.rawValue, phase: op.phase.rawValue, release: op.target?.directory ?? "?",
                elapsed: Self.seconds(now - op.startedAt), progress: Array(op.progress.suffix(20)), queued: queue.count)
        }
        let budget = (try? host.memory.hostReadings()).map { readings in
            let budget = EffectiveBudget.resolve(config.memory.budget, readings: readings)
            return StatusSnapshot.Budget(bytes: budget.bytes, source: budget.source.rawValue, threshold: config.memory.threshold)
        }
        return StatusSnapshot(
            app: config.app.name, pid: getpid(), state: phase.rawValue, release: releaseState.current.directory,
            listeners: listeners.map(\.address), summary: summary, slots: slotRows, workerLimit: config.memory.workerLimit,
            mergeable: config.memory.mergeable, operation: operationStatus, degraded: degraded,
            logDroppedBytes: LogWriter.standardError.droppedBytes, problems: stateProblems, oom: oomStatus(),
            reservation: reservationReport(), ksm: ksmStatus(),
            molds: moldMode
                ? moldBook.molds.map {
                    StatusSnapshot.Mold(
                        pid: $0.pid, release: $0.spec.release, state: $0.state.rawValue, startedAtWall: $0.startedAtWall,
                        pssBytes: trees[$0.pid]?.pss)
                } : nil,
            moldRestarts: moldBook.restarts, budget: budget)
    }

    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return max(0, Double(s) + Double(atto) / 1e18)
    }
}
