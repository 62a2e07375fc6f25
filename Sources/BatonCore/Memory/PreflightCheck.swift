/// What a planned deploy adds at its peak, before it is checked against the headroom.
///
/// - `surge`: `max_surge` new workers run beside the old ones until each old one has drained:
///   `max_surge × footprint` more memory (and `max_surge × commit charge` more commit).
/// - `replace`: the old worker's tree has exited — its private memory and its commit freed —
///   before its successor is spawned, so the peak adds no worker. Only the tooling counts.
/// - `auto`: surge when that fits, else replace (the deploy can always fall back).
/// - `tooling` (`--need`) is the CI's own tooling on the host (unpacking, migrations ...); it is
///   counted in memory and in commit charge alike.
/// - `mold` (mold mode): the new release's mold, which loads the application before any old
///   worker is touched, whatever the strategy; counted in memory and commit charge alike.
public struct DeployPlan: Sendable, Equatable {
    /// The configured or requested strategy.
    public var strategy: DeployStrategy
    /// Extra workers at once under surge, at least 1.
    public var maxSurge: Int
    /// PSS of one new worker; nil when unknown (no worker measured, nothing configured).
    public var footprint: UInt64?
    /// Commit charge of one worker tree (the running workers' median); nil = use `footprint`.
    public var commitPerWorker: UInt64?
    /// Bytes the CI's own tooling needs (`--need`).
    public var tooling: UInt64
    /// Bytes of the new release's mold (mold mode; 0: none to start).
    public var mold: UInt64

    /// Creates a plan.
    public init(
        strategy: DeployStrategy, maxSurge: Int = 1, footprint: UInt64?, commitPerWorker: UInt64? = nil,
        tooling: UInt64 = 0, mold: UInt64 = 0
    ) {
        self.strategy = strategy
        self.maxSurge = max(1, maxSurge)
        self.footprint = footprint
        self.commitPerWorker = commitPerWorker
        self.tooling = tooling
        self.mold = mold
    }
}

/// The answer of `baton preflight`: fits or not, with the figures and the limit that binds.
public struct PreflightVerdict: Sendable, Equatable {
    /// Whether the planned deploy fits under every limit.
    public var fits: Bool
    /// The strategy the figures are for (auto resolved).
    public var strategy: RollingRestart.Strategy
    /// New workers running beside old ones at the peak (0 for replace).
    public var extraWorkers: Int
    /// PSS per new worker counted (0 for replace or when unknown).
    public var perWorker: UInt64
    /// Commit charge per new worker counted.
    public var perWorkerCommit: UInt64
    /// Bytes for the CI's tooling.
    public var tooling: UInt64
    /// Bytes for the new release's mold.
    public var mold: UInt64 = 0
    /// The limit with the least slack (the one that fails when it does not fit).
    public var binding: HeadroomLimit
    /// Bytes missing under the binding limit; 0 when it fits.
    public var shortfall: UInt64
    /// The one line for CI logs (see ``PreflightCheck/evaluate(_:headroom:)``).
    public var summary: String

    /// The peak need against memory limits.
    public var memoryNeed: UInt64 { UInt64(extraWorkers) * perWorker + tooling + mold }
    /// The peak need against the commit limit.
    public var commitNeed: UInt64 { UInt64(extraWorkers) * perWorkerCommit + tooling + mold }
    /// The need the binding limit counts.
    public var bindingNeed: UInt64 { binding.kind.countsCommitCharge ? commitNeed : memoryNeed }
}

/// The pre-deploy memory check.
public enum PreflightCheck {
    /// Checks `plan` against `headroom`. The summary reads
    /// `fits: need 612.0 MiB (1 × 100.0 MiB surge + 512.0 MiB tooling), have 3.1 GiB (host MemAvailable − reserve)`
    /// or `does not fit: need …, have … (binding: cgroup memory.max)`; when the commit limit
    /// binds, the need is commit charge and says so. With `auto`, a surge that does not fit
    /// falls back to replace and the line says what the surge would have needed.
    public static func evaluate(_ plan: DeployPlan, headroom: Headroom) -> PreflightVerdict {
        switch plan.strategy {
        case .replace:
            return verdict(plan, strategy: .replace, headroom: headroom)
        case .surge:
            return verdict(plan, strategy: .surge, headroom: headroom)
        case .auto:
            let surge = verdict(plan, strategy: .surge, headroom: headroom)
            if surge.fits { return surge }
            var replace = verdict(plan, strategy: .replace, headroom: headroom)
            if plan.footprint == nil {
                replace.summary += "; surge not considered: the worker footprint is unknown"
            } else {
                replace.summary += "; a surge would need \(Units.formatSize(surge.bindingNeed))"
                replace.summary += surge.binding.kind.countsCommitCharge ? " of commit charge" : ""
            }
            return replace
        }
    }

    /// The verdict for one concrete strategy.
    static func verdict(
        _ plan: DeployPlan, strategy: RollingRestart.Strategy, headroom: Headroom
    ) -> PreflightVerdict {
        let extra = strategy == .surge ? plan.maxSurge : 0
        let perWorker = strategy == .surge ? plan.footprint ?? 0 : 0
        let perWorkerCommit = strategy == .surge ? plan.commitPerWorker ?? perWorker : 0
        let memoryNeed = UInt64(extra) * perWorker + plan.tooling + plan.mold
        let commitNeed = UInt64(extra) * perWorkerCommit + plan.tooling + plan.mold
        let binding = headroom.binding(memoryNeed: memoryNeed, commitNeed: commitNeed)
        let slack = headroom.slack(binding, memoryNeed: memoryNeed, commitNeed: commitNeed)
        let unknownFootprint = strategy == .surge && plan.footprint == nil
        var verdict = PreflightVerdict(
            fits: slack >= 0 && !unknownFootprint, strategy: strategy, extraWorkers: extra, perWorker: perWorker,
            perWorkerCommit: perWorkerCommit, tooling: plan.tooling, mold: plan.mold, binding: binding,
            shortfall: slack < 0 ? slack.magnitude : 0, summary: "")
        verdict.summary =
            unknownFootprint
            ? "does not fit: the worker footprint is unknown (no worker measured yet, deploy.worker_footprint not set)"
            : summary(verdict)
        return verdict
    }

    /// The one-line summary of a verdict.
    static func summary(_ v: PreflightVerdict) -> String {
        let commit = v.binding.kind.countsCommitCharge
        let per = commit ? v.perWorkerCommit : v.perWorker
        var parts: [String] = []
        switch v.strategy {
        case .surge: parts.append("\(v.extraWorkers) × \(Units.formatSize(per)) surge")
        case .replace: parts.append("replace: no extra worker")
        }
        if v.mold > 0 { parts.append("\(Units.formatSize(v.mold)) new mold") }
        if v.tooling > 0 { parts.append("\(Units.formatSize(v.tooling)) tooling") }
        let need = Units.formatSize(v.bindingNeed) + (commit ? " of commit charge" : "")
        let have = Units.formatSignedSize(v.binding.available)
        let name = v.binding.kind == .hostAvailable ? "host MemAvailable − reserve" : v.binding.kind.name
        let head = v.fits ? "fits" : "does not fit"
        let tail = v.fits ? "(\(name))" : "(binding: \(name))"
        return "\(head): need \(need) (\(parts.joined(separator: " + "))), have \(have) \(tail)"
    }
}
