/// Why a worker was restarted: logged with every restart, counted per reason in the metrics,
/// shown as `last_restart_reason` in `baton status`.
public enum RestartReason: String, Sendable, Equatable, Codable, CaseIterable {
    /// The rolling restart: the worker reached `rolling.max_age` plus its slot's splay.
    case age
    /// The total passed `memory.threshold` × budget and this was the largest old-enough worker.
    case memoryThreshold = "memory-threshold"
    /// The worker's USS passed `memory.worker_limit`.
    case workerLimit = "worker-limit"
    /// The worker's fitted growth (or the workers' summed growth, for the threshold) would cross
    /// `memory.worker_limit` (the threshold) before a replacement ordered at the next check is ready.
    case leakPrediction = "leak-prediction"
    /// The worker exited on its own and was respawned.
    case crash
    /// A deploy replaced it.
    case deploy
    /// A rollback replaced it.
    case rollback
    /// A reload replaced it.
    case reload
    /// An operator asked for it.
    case manual
    /// It missed its worker watchdog (`readiness.watchdog`) or sent `WATCHDOG=trigger`.
    case watchdog
    /// A process of its tree stayed stopped longer than `readiness.stopped_timeout`.
    case liveness
    /// `readiness.liveness_probe` failed `liveness_failures` times in a row.
    case livenessProbe = "liveness-probe"
    /// The kernel's OOM killer killed the worker or a process of its tree.
    case oom
    /// `baton preflight --roll-ahead` (or the held reservation) replaced it.
    case rollAhead = "roll-ahead"
    /// It reported (`X_BATON_REQUESTS=`) more requests than its `rolling.max_requests` limit.
    case maxRequests = "max-requests"
    /// It was not ready within `readiness.timeout` and was killed.
    case readinessTimeout = "readiness-timeout"
    /// Its process could not be spawned (the status shows the error).
    case startFailed = "start-failed"

    /// True for the reasons the periodic ``RestartPolicy`` decides.
    public var isPolicy: Bool {
        switch self {
        case .age, .memoryThreshold, .workerLimit, .leakPrediction: true
        case .crash, .deploy, .rollback, .reload, .manual, .watchdog, .liveness, .livenessProbe, .oom, .rollAhead, .maxRequests,
            .readinessTimeout, .startFailed:
            false
        }
    }
}
