/// Memory of a process or a process tree, in bytes.
public struct MemorySample: Sendable, Equatable, Codable {
    /// Resident set size (counts shared pages in full: never sum it to decide).
    public var rss: UInt64
    /// Proportional set size (shared pages divided among their users).
    public var pss: UInt64?
    /// Unique set size as baton counts it: Private_Dirty, the private pages killing it frees, at
    /// most Pss_Anon + Pss_Shmem. Private_Clean is left out: clean pages only this process maps
    /// are the cache of a file it maps (its binary, a data file it reads through mmap), which
    /// stays after it exits; so are dirty ones, its anonymous and shmem memory bounding them.
    public var uss: UInt64?
    /// Shared resident memory: Shared_Clean + Shared_Dirty, pages some other process maps too
    /// (copy-on-write pages of a fork, libraries, shared mappings). A forked worker's pages
    /// move from here to `uss` as it writes them (copy-on-write erosion).
    public var shared: UInt64?
    /// KSM figures of the tree (`/proc/PID/ksm_stat`), read only when `memory.mergeable` is on.
    public var ksm: KSMStat?

    /// Creates a sample.
    public init(rss: UInt64, pss: UInt64?, uss: UInt64?, shared: UInt64? = nil, ksm: KSMStat? = nil) {
        self.rss = rss
        self.pss = pss
        self.uss = uss
        self.shared = shared
        self.ksm = ksm
    }

    /// Sums two samples; a missing PSS/USS/shared on either side makes it missing, KSM
    /// figures add up where present.
    public static func + (a: MemorySample, b: MemorySample) -> MemorySample {
        MemorySample(
            rss: a.rss.saturatingAdd(b.rss),
            pss: a.pss.flatMap { x in b.pss.map { x.saturatingAdd($0) } },
            uss: a.uss.flatMap { x in b.uss.map { x.saturatingAdd($0) } },
            shared: a.shared.flatMap { x in b.shared.map { x.saturatingAdd($0) } },
            ksm: a.ksm.map { x in b.ksm.map { x + $0 } ?? x } ?? b.ksm)
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
        /// CPU time in clock ticks: user and system, its own and its reaped children's
        /// (utime, stime, cutime, cstime).
        public var cpuTicks: UInt64 = 0
    }

    /// Parses /proc/PID/stat; the command name may hold spaces and parens,
    /// so fields are counted after the last ')'.
    public static func statFields(_ text: String) -> StatFields? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] = state (field 3), rest[1] = ppid, rest[2] = pgrp, rest[11...14] = utime, stime,
        // cutime, cstime (fields 14-17), rest[19] = starttime (field 22)
        guard rest.count > 19, let state = rest[0].first, let ppid = Int32(rest[1]), let pgrp = Int32(rest[2]),
            let start = UInt64(rest[19])
        else { return nil }
        let cpu = rest[11...14].reduce(UInt64(0)) { $0.saturatingAdd(UInt64($1) ?? 0) }
        return StatFields(state: state, ppid: ppid, pgrp: pgrp, startTicks: start, cpuTicks: cpu)
    }

    /// RSS in bytes from /proc/PID/statm (second field, in pages).
    public static func statmRSS(_ text: String, pageSize: UInt64) -> UInt64? {
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = UInt64(fields[1]) else { return nil }
        return pages.saturatingMultiply(pageSize)
    }

    /// RSS, PSS, USS (Private_Dirty, see ``MemorySample/uss``) and shared resident bytes from
    /// /proc/PID/smaps_rollup.
    public static func smapsRollup(_ text: String) -> (rss: UInt64, pss: UInt64, uss: UInt64, shared: UInt64)? {
        // Bytes, not Characters (see CommitCharge.privateWritable): "Key:   123 kB" lines.
        var rss: UInt64?
        var pss: UInt64?
        var uss: UInt64 = 0
        var shared: UInt64 = 0
        // Pss_Anon + Pss_Shmem (kernels since 5.x): anonymous and shmem pages, a shared one's
        // share only; nil on a kernel without them.
        var anonymous: UInt64?
        for line in text.utf8.split(separator: ASCIIBytes.newline) {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let key = line[..<colon]
            let number = line[line.index(after: colon)...].drop { $0 == ASCIIBytes.space }.prefix { $0 != ASCIIBytes.space }
            guard let kb = ASCIIBytes.number(number, radix: 10) else { continue }
            if key.elementsEqual("Rss".utf8) {
                rss = kb.saturatingMultiply(1024)
            } else if key.elementsEqual("Pss".utf8) {
                pss = kb.saturatingMultiply(1024)
            } else if key.elementsEqual("Private_Dirty".utf8) {
                uss = uss.saturatingAdd(kb.saturatingMultiply(1024))
            } else if key.elementsEqual("Pss_Anon".utf8) || key.elementsEqual("Pss_Shmem".utf8) {
                anonymous = (anonymous ?? 0).saturatingAdd(kb.saturatingMultiply(1024))
            } else if key.elementsEqual("Shared_Clean".utf8) || key.elementsEqual("Shared_Dirty".utf8) {
                shared = shared.saturatingAdd(kb.saturatingMultiply(1024))
            }
        }
        guard let rss, let pss else { return nil }
        // Dirty pages of a file only this process maps are Private_Dirty until written back (up
        // to ~30 s): a re-audit's worker that mapped a 150 MiB file written a second before read
        // as `USS 160.3 MiB > worker_limit`. No more than its anonymous and shmem memory.
        if let anonymous { uss = min(uss, anonymous) }
        return (rss, pss, uss, shared)
    }

    /// The inodes of the TCP sockets listening on `port` (state `0A`), from the text of
    /// /proc/net/tcp or /proc/net/tcp6 (`sl local_address rem_address st … uid timeout inode`).
    public static func listeningInodes(_ text: String, port: UInt16) -> [UInt64] {
        text.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) == port, let inode = UInt64(fields[9]), inode > 0
            else { return nil }
            return inode
        }
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

/// Byte-level helpers for the /proc parsers that run every tick.
enum ASCIIBytes {
    static let newline = UInt8(ascii: "\n")
    static let space = UInt8(ascii: " ")

    /// An unsigned number in `radix` (10 or 16, lowercase or uppercase hex digits), nil when
    /// empty, not a number or over 64 bits.
    static func number<C: Collection>(_ bytes: C, radix: UInt64) -> UInt64? where C.Element == UInt8 {
        guard !bytes.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            let digit: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt64(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            guard digit < radix else { return nil }
            let (shifted, o1) = value.multipliedReportingOverflow(by: radix)
            let (sum, o2) = shifted.addingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }
}

/// Sums and products that stop at the type's bound instead of trapping: figures read from /proc
/// (a fuzz audit: `Rss: 18014398509481984 kB` made `kb * 1024` abort baton; only a kernel
/// writes these files, but a wrong number must not end the supervisor) and counts workers send.
extension FixedWidthInteger {
    /// `self + other`, stopping at `.max` (or `.min` for a signed sum that overflows downwards).
    public func saturatingAdd(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other < .zero ? .min : .max) : sum
    }
}

extension UInt64 {

    func saturatingMultiply(_ other: UInt64) -> UInt64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? .max : product
    }
}
