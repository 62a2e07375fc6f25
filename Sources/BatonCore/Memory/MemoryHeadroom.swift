/// The host and cgroup figures one measurement gathered: the input of the budget model.
public struct MemoryReadings: Sendable, Equatable, Codable {
    /// `/proc/meminfo`.
    public var host: HostMemoryInfo
    /// `vm.overcommit_memory`.
    public var overcommit: OvercommitMode
    /// The service's cgroup; nil when it could not be found (no memory controller).
    public var cgroup: CgroupMemory?

    /// Creates a reading.
    public init(host: HostMemoryInfo, overcommit: OvercommitMode, cgroup: CgroupMemory?) {
        self.host = host
        self.overcommit = overcommit
        self.cgroup = cgroup
    }
}

/// A limit a deploy or a policy is measured against.
public enum MemoryLimitKind: String, Sendable, Equatable, Codable, CaseIterable {
    /// The host's `MemAvailable` minus `memory.reserve`.
    case hostAvailable = "host_available"
    /// The effective v2 `memory.max` minus the cgroup's working set.
    case cgroupMax = "cgroup_max"
    /// The effective v2 `memory.high` minus the working set (above it the kernel throttles).
    case cgroupHigh = "cgroup_high"
    /// The v1 `hierarchical_memory_limit` minus the working set.
    case cgroupV1Limit = "cgroup_v1_limit"
    /// `CommitLimit − Committed_AS`, only under `vm.overcommit_memory=2`.
    case commitLimit = "commit_limit"
    /// A configured `memory.budget` minus the workers' PSS.
    case configuredBudget = "memory_budget"

    /// The name in messages: `"host MemAvailable"`, `"cgroup memory.max"`, ...
    public var name: String {
        switch self {
        case .hostAvailable: "host MemAvailable"
        case .cgroupMax: "cgroup memory.max"
        case .cgroupHigh: "cgroup memory.high"
        case .cgroupV1Limit: "cgroup memory.limit_in_bytes (v1)"
        case .commitLimit: "commit limit (vm.overcommit_memory=2)"
        case .configuredBudget: "memory.budget"
        }
    }

    /// True for the commit limit: it is compared with commit charge, the others with PSS.
    public var countsCommitCharge: Bool { self == .commitLimit }
}

/// How much more one limit grants.
public struct HeadroomLimit: Sendable, Equatable, Codable {
    /// Which limit.
    public var kind: MemoryLimitKind
    /// Bytes still available under it; negative when already past it.
    public var available: Int64

    /// Creates a limit.
    public init(kind: MemoryLimitKind, available: Int64) {
        self.kind = kind
        self.available = available
    }
}

/// The memory budget the restart policy measures against: `memory.budget` when configured,
/// else the cgroup's effective limit, else `MemTotal`. A configured budget over that limit is
/// the limit: the kernel's OOM killer acts there, so `threshold` × a larger budget could
/// never be reached first (``configuredOver`` keeps the figure, for a warning).
public struct EffectiveBudget: Sendable, Equatable, Codable {
    /// Where the figure comes from.
    public enum Source: String, Sendable, Equatable, Codable {
        /// `memory.budget` in the config.
        case configured
        /// The cgroup's effective limit.
        case cgroup
        /// The host's `MemTotal`.
        case memTotal = "mem_total"
    }

    /// The budget in bytes.
    public var bytes: UInt64
    /// Where it comes from.
    public var source: Source
    /// The configured `memory.budget` when it was over the cgroup's limit (or `MemTotal`), which
    /// is the budget instead.
    public var configuredOver: UInt64?

    /// Creates a budget.
    public init(bytes: UInt64, source: Source, configuredOver: UInt64? = nil) {
        self.bytes = bytes
        self.source = source
        self.configuredOver = configuredOver
    }

    /// Resolves `memory.budget` against a reading.
    public static func resolve(_ configured: MemoryBudget, readings: MemoryReadings) -> EffectiveBudget {
        let ceiling =
            readings.cgroup?.limit.map { EffectiveBudget(bytes: $0, source: .cgroup) } ?? EffectiveBudget(bytes: readings.host.total, source: .memTotal)
        guard case .bytes(let bytes) = configured else { return ceiling }
        guard bytes > ceiling.bytes, ceiling.bytes > 0 else { return EffectiveBudget(bytes: bytes, source: .configured) }
        return EffectiveBudget(bytes: ceiling.bytes, source: ceiling.source, configuredOver: bytes)
    }

    /// The warning a budget over the limit gets (nil when it is not).
    public var overTheLimitWarning: String? {
        guard let configuredOver else { return nil }
        let limit = source == .cgroup ? "the cgroup's memory limit" : "the host's MemTotal"
        return
            "[memory] budget \(Units.formatSize(configuredOver)) is over \(limit), \(Units.formatSize(bytes)), where the kernel's OOM killer acts: the memory rules measure against \(Units.formatSize(bytes)) instead"
    }
}

/// What a deploy can still add, limit by limit. The tightest one binds; which one it is goes
/// into every verdict, because the fix differs (free host memory, raise `MemoryMax=`, lower
/// overcommit pressure ...).
///
/// - host: `MemAvailable − memory.reserve`. The reserve is kept for the deploy's own tooling and
///   everything else on the host; it applies to the host only, because that tooling runs outside
///   the service's cgroup.
/// - cgroup: `limit − (usage − reclaimable)`, and the same against `memory.high` (v2), when set.
/// - commit: `CommitLimit − Committed_AS`, only under `vm.overcommit_memory=2`, where fork and
///   mmap fail against it however much RAM is free; compared with commit charge, not PSS.
/// - budget: a configured `memory.budget` minus the workers' summed PSS.
public struct Headroom: Sendable, Equatable, Codable {
    /// Every limit that applies, in a fixed order (host, cgroup, commit, budget).
    public var limits: [HeadroomLimit]

    /// Creates a headroom from its limits (at least one).
    public init(limits: [HeadroomLimit]) {
        precondition(!limits.isEmpty, "a headroom has at least the host limit")
        self.limits = limits
    }

    /// Measures the headroom of a reading under `memory` settings; `workersPSS` is the sum of
    /// the workers' PSS (only a configured budget uses it).
    public init(readings: MemoryReadings, memory: MemoryConfig, workersPSS: UInt64) {
        var limits = [
            HeadroomLimit(
                kind: .hostAvailable, available: Self.difference(readings.host.available, memory.reserve))
        ]
        if let cgroup = readings.cgroup {
            if let limit = cgroup.limit {
                let kind: MemoryLimitKind = cgroup.version == .v2 ? .cgroupMax : .cgroupV1Limit
                limits.append(HeadroomLimit(kind: kind, available: Self.difference(limit, cgroup.workingSet)))
            }
            if let high = cgroup.high, high < cgroup.limit ?? .max {
                limits.append(HeadroomLimit(kind: .cgroupHigh, available: Self.difference(high, cgroup.workingSet)))
            }
        }
        if readings.overcommit == .strict {
            limits.append(HeadroomLimit(kind: .commitLimit, available: readings.host.commitHeadroom))
        }
        // A configured budget over the cgroup's limit (or MemTotal) is that limit.
        if case .bytes = memory.budget {
            let budget = EffectiveBudget.resolve(memory.budget, readings: readings)
            limits.append(HeadroomLimit(kind: .configuredBudget, available: Self.difference(budget.bytes, workersPSS)))
        }
        self.init(limits: limits)
    }

    /// The limit with the least available, whatever it is compared with.
    public var tightest: HeadroomLimit { binding(memoryNeed: 0, commitNeed: 0) }

    /// The limit left with the least slack after a need: `memoryNeed` against the memory
    /// limits, `commitNeed` against the commit limit. Ties go to the earlier limit.
    public func binding(memoryNeed: UInt64, commitNeed: UInt64) -> HeadroomLimit {
        var best = limits[0]
        var bestSlack = slack(best, memoryNeed: memoryNeed, commitNeed: commitNeed)
        for limit in limits.dropFirst() {
            let s = slack(limit, memoryNeed: memoryNeed, commitNeed: commitNeed)
            if s < bestSlack {
                best = limit
                bestSlack = s
            }
        }
        return best
    }

    /// The limit of `kind`, if it applies.
    public func limit(_ kind: MemoryLimitKind) -> HeadroomLimit? { limits.first { $0.kind == kind } }

    /// `available − need` for the need that limit counts.
    func slack(_ limit: HeadroomLimit, memoryNeed: UInt64, commitNeed: UInt64) -> Int64 {
        limit.available - Int64(clamping: limit.kind.countsCommitCharge ? commitNeed : memoryNeed)
    }

    /// `a − b` as a signed count.
    static func difference(_ a: UInt64, _ b: UInt64) -> Int64 { Int64(clamping: a) - Int64(clamping: b) }
}

extension Units {
    /// ``formatSize(_:)`` for a signed count: `"-100.0 MiB"` below zero.
    public static func formatSignedSize(_ bytes: Int64) -> String {
        bytes < 0 ? "-" + formatSize(bytes.magnitude) : formatSize(UInt64(bytes))
    }
}
