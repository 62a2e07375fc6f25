/// A process's (or a process tree's) Kernel Samepage Merging figures, from
/// `/proc/PID/ksm_stat` (Linux 6.1 and later; the `ksm_merge_any` line since 6.4).
public struct KSMStat: Sendable, Equatable, Codable {
    /// `ksm_rmap_items`: pages ksmd tracks for the process (each costs the kernel a small
    /// rmap item, which is why the profit can be negative).
    public var rmapItems: UInt64
    /// `ksm_merging_pages`: the process's pages that are merged with another identical page.
    public var mergingPages: UInt64
    /// `ksm_zero_pages`: pages merged with the zero page (`use_zero_pages`).
    public var zeroPages: UInt64
    /// `ksm_process_profit`: bytes merging saves, minus the kernel's rmap items (may be < 0).
    public var profit: Int64
    /// `ksm_merge_any`: the whole process is mergeable (PR_SET_MEMORY_MERGE); for a tree, all
    /// of its processes are.
    public var mergeAny: Bool

    enum CodingKeys: String, CodingKey {
        case rmapItems = "rmap_items"
        case mergingPages = "merging_pages"
        case zeroPages = "zero_pages"
        case profit
        case mergeAny = "merge_any"
    }

    /// Creates a record.
    public init(rmapItems: UInt64 = 0, mergingPages: UInt64 = 0, zeroPages: UInt64 = 0, profit: Int64 = 0, mergeAny: Bool = false) {
        self.rmapItems = rmapItems
        self.mergingPages = mergingPages
        self.zeroPages = zeroPages
        self.profit = profit
        self.mergeAny = mergeAny
    }

    /// Sums two processes' figures (a worker's tree).
    public static func + (a: KSMStat, b: KSMStat) -> KSMStat {
        KSMStat(
            rmapItems: a.rmapItems &+ b.rmapItems, mergingPages: a.mergingPages &+ b.mergingPages, zeroPages: a.zeroPages &+ b.zeroPages,
            profit: a.profit &+ b.profit, mergeAny: a.mergeAny && b.mergeAny)
    }

    /// Parses `/proc/PID/ksm_stat`: "ksm_rmap_items 12" lines and "ksm_merge_any: yes". Nil
    /// when the text has no `ksm_process_profit` line (an exited process, an older kernel).
    public static func parse(_ text: String) -> KSMStat? {
        var stat = KSMStat()
        var sawProfit = false
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2 else { continue }
            let key = parts[0].hasSuffix(":") ? parts[0].dropLast() : parts[0]
            let value = parts[1]
            switch key {
            case "ksm_rmap_items": stat.rmapItems = UInt64(value) ?? stat.rmapItems
            case "ksm_merging_pages": stat.mergingPages = UInt64(value) ?? stat.mergingPages
            case "ksm_zero_pages": stat.zeroPages = UInt64(value) ?? stat.zeroPages
            case "ksm_merge_any": stat.mergeAny = value == "yes"
            case "ksm_process_profit":
                guard let profit = Int64(value) else { return nil }
                stat.profit = profit
                sawProfit = true
            default: continue
            }
        }
        return sawProfit ? stat : nil
    }
}

/// The messages of `memory.mergeable`: what baton logs once and `baton status` shows when
/// marking workers mergeable cannot save anything.
public enum MemoryMerge {
    /// Where the host's KSM daemon is switched on and off.
    public static let runPath = "/sys/kernel/mm/ksm/run"

    /// The kernel refused PR_SET_MEMORY_MERGE with `errno` (EINVAL: older than 6.4, or built
    /// without KSM; anything else, e.g. a security module's EPERM, is named as it is).
    public static func refused(errno: Int32, errorText: String) -> String {
        if errno == 22 {  // EINVAL
            return "memory.mergeable: this kernel cannot mark processes mergeable (PR_SET_MEMORY_MERGE needs Linux 6.4); workers run unmerged"
        }
        return "memory.mergeable: the kernel refused PR_SET_MEMORY_MERGE (\(errorText)); workers run unmerged"
    }

    /// The note for the content of ``runPath`` (nil: the file is missing); nil when ksmd runs.
    public static func daemonNote(run: String?) -> String? {
        guard let run else {
            return "memory.mergeable: this kernel has no KSM (\(runPath) is missing): nothing will be merged"
        }
        let value = run.split(whereSeparator: { $0 == "\n" || $0 == " " }).first.map(String.init) ?? ""
        if value == "1" { return nil }
        return "memory.mergeable: the host's KSM daemon is off (\(runPath) = \(value)): nothing will be merged; enable it with: echo 1 > \(runPath)"
    }
}
