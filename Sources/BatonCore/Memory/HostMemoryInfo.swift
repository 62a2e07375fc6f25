/// A /proc or cgroup file that did not have the expected shape: what is wrong, for a one-line
/// message. Readers in BatonSystem add the path.
public struct MemoryParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong, e.g. `missing field "MemAvailable"`.
    public var problem: String

    /// Creates an error.
    public init(_ problem: String) {
        self.problem = problem
    }

    /// The problem.
    public var description: String { problem }
}

/// `vm.overcommit_memory`: how the kernel grants address space (`Documentation/mm/overcommit-accounting`).
public enum OvercommitMode: Int, Sendable, Equatable, Codable {
    /// 0: heuristic; only obviously excessive requests fail. Fork rarely fails before the OOM killer.
    case heuristic = 0
    /// 1: always grant.
    case always = 1
    /// 2: strict: a request fails (`ENOMEM`, "Cannot allocate memory" at fork) when
    /// `Committed_AS` would pass `CommitLimit`, however much RAM is free.
    case strict = 2

    /// Parses `/proc/sys/vm/overcommit_memory` (`"2\n"`).
    public static func parse(_ text: String) throws(MemoryParseError) -> OvercommitMode {
        let trimmed = text.split(whereSeparator: { $0 == "\n" || $0 == " " || $0 == "\t" })
        guard trimmed.count == 1, let value = Int(trimmed[0]), let mode = OvercommitMode(rawValue: value) else {
            throw MemoryParseError("expected 0, 1 or 2, got \"\(text.prefix(20))\"")
        }
        return mode
    }
}

/// The host-wide figures of `/proc/meminfo` that the budget model uses, in bytes.
public struct HostMemoryInfo: Sendable, Equatable, Codable {
    /// `MemTotal`: the RAM the kernel manages.
    public var total: UInt64
    /// `MemAvailable`: the kernel's estimate of what can be allocated without swapping
    /// (free memory plus reclaimable page cache and slab).
    public var available: UInt64
    /// `CommitLimit`: the address space the kernel grants under `vm.overcommit_memory=2`.
    public var commitLimit: UInt64
    /// `Committed_AS`: the address space granted so far (counted in every mode).
    public var committed: UInt64

    /// Creates a host figure set.
    public init(total: UInt64, available: UInt64, commitLimit: UInt64, committed: UInt64) {
        self.total = total
        self.available = available
        self.commitLimit = commitLimit
        self.committed = committed
    }

    /// `CommitLimit − Committed_AS`, negative when more is committed than the limit (root and
    /// mode changes can do that).
    public var commitHeadroom: Int64 { Int64(clamping: commitLimit) - Int64(clamping: committed) }

    /// Parses `/proc/meminfo` (`Name:   1234 kB` lines; order and other fields do not matter).
    public static func parse(_ text: String) throws(MemoryParseError) -> HostMemoryInfo {
        var values: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0].hasSuffix(":"), let number = UInt64(parts[1]) else { continue }
            let kilobytes = parts.count >= 3 && parts[2] == "kB"
            values[parts[0].dropLast()] = kilobytes ? number.saturatingMultiply(1024) : number
        }
        func field(_ name: Substring) throws(MemoryParseError) -> UInt64 {
            guard let value = values[name] else { throw MemoryParseError("missing field \"\(name)\"") }
            return value
        }
        return HostMemoryInfo(
            total: try field("MemTotal"), available: try field("MemAvailable"),
            commitLimit: try field("CommitLimit"), committed: try field("Committed_AS"))
    }
}
