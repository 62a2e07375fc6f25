/// Memory of a process or a process tree, in bytes.
public struct MemorySample: Sendable, Equatable, Codable {
    /// Resident set size (counts shared pages in full: never sum it to decide).
    public var rss: UInt64
    /// Proportional set size (shared pages divided among their users).
    public var pss: UInt64?
    /// Unique set size: Private_Clean + Private_Dirty, what killing it frees.
    public var uss: UInt64?

    /// Creates a sample.
    public init(rss: UInt64, pss: UInt64?, uss: UInt64?) {
        self.rss = rss
        self.pss = pss
        self.uss = uss
    }

    /// Sums two samples; a missing PSS/USS on either side makes it missing.
    public static func + (a: MemorySample, b: MemorySample) -> MemorySample {
        MemorySample(
            rss: a.rss + b.rss,
            pss: a.pss.flatMap { x in b.pss.map { x + $0 } },
            uss: a.uss.flatMap { x in b.uss.map { x + $0 } })
    }
}

/// Parsers for /proc text formats, pure so recorded files can be tests' fixtures.
public enum ProcParsers {
    /// The fields of /proc/PID/stat that baton uses.
    public struct StatFields: Sendable, Equatable {
        /// Process state letter (R, S, D, Z, T, ...).
        public var state: Character
        /// Parent pid.
        public var ppid: Int32
        /// Process group id.
        public var pgrp: Int32
        /// Start time in clock ticks after boot.
        public var startTicks: UInt64
    }

    /// Parses /proc/PID/stat; the command name may hold spaces and parens,
    /// so fields are counted after the last ')'.
    public static func statFields(_ text: String) -> StatFields? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] = state (field 3), rest[1] = ppid, rest[2] = pgrp, rest[19] = starttime (field 22)
        guard rest.count > 19, let state = rest[0].first, let ppid = Int32(rest[1]), let pgrp = Int32(rest[2]),
            let start = UInt64(rest[19])
        else { return nil }
        return StatFields(state: state, ppid: ppid, pgrp: pgrp, startTicks: start)
    }

    /// RSS in bytes from /proc/PID/statm (second field, in pages).
    public static func statmRSS(_ text: String, pageSize: UInt64) -> UInt64? {
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = UInt64(fields[1]) else { return nil }
        return pages * pageSize
    }

    /// RSS, PSS and USS in bytes from /proc/PID/smaps_rollup.
    public static func smapsRollup(_ text: String) -> (rss: UInt64, pss: UInt64, uss: UInt64)? {
        var values: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0].hasSuffix(":"), let kb = UInt64(parts[1]) else { continue }
            values[parts[0].dropLast()] = kb * 1024
        }
        guard let rss = values["Rss"], let pss = values["Pss"] else { return nil }
        let uss = (values["Private_Clean"] ?? 0) + (values["Private_Dirty"] ?? 0)
        return (rss, pss, uss)
    }

    /// A hex signal mask field (SigBlk, SigIgn, ...) from /proc/PID/status.
    public static func statusMask(_ text: String, field: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let hex = line.dropFirst(field.count + 1).filter { !$0.isWhitespace }
            return UInt64(hex, radix: 16)
        }
        return nil
    }
}
