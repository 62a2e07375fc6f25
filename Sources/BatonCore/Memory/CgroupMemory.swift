/// The memory figures of the cgroup a process is accounted in, in bytes.
///
/// - `limit` is the *effective* limit: the smallest over the cgroup and its ancestors (v2:
///   `memory.max` walked up; v1: `hierarchical_memory_limit`), nil when unlimited.
/// - `reclaimable` is the page cache the kernel would drop before failing an allocation
///   against the limit without thrashing: the file LRU lists minus what processes have mapped
///   (v2: `inactive_file + active_file − file_mapped`; v1: the `total_` fields, which include
///   descendants). Mapped file pages (the workers' own code, mmapped data) are left out on
///   purpose: the kernel can evict them, but they fault straight back in.
public struct CgroupMemory: Sendable, Equatable, Codable {
    /// The cgroup version the memory controller runs on.
    public enum Version: String, Sendable, Equatable, Codable {
        /// cgroup v1 (a `memory` hierarchy; also the memory controller on hybrid hosts).
        case v1
        /// cgroup v2 (the unified hierarchy).
        case v2
    }

    /// v1 or v2.
    public var version: Version
    /// The cgroup charged for the process, as `/proc/PID/cgroup` names it (`/system.slice/x.service`).
    public var path: String
    /// The effective limit (smallest over the ancestors), nil when unlimited.
    public var limit: UInt64?
    /// The cgroup whose own limit is the effective one (the cgroup itself or an ancestor).
    public var limitPath: String?
    /// Bytes charged: `memory.current` (v2) or `memory.usage_in_bytes` (v1); includes page cache.
    public var usage: UInt64
    /// The effective `memory.high` (v2 only; smallest over the ancestors), nil when unset.
    public var high: UInt64?
    /// Page cache that can be dropped without thrashing (see the type's documentation).
    public var reclaimable: UInt64

    /// Creates a figure set.
    public init(
        version: Version, path: String, limit: UInt64?, limitPath: String? = nil, usage: UInt64,
        high: UInt64? = nil, reclaimable: UInt64
    ) {
        self.version = version
        self.path = path
        self.limit = limit
        self.limitPath = limitPath
        self.usage = usage
        self.high = high
        self.reclaimable = reclaimable
    }

    /// What the cgroup really holds on to: usage minus reclaimable cache.
    public var workingSet: UInt64 { usage > reclaimable ? usage - reclaimable : 0 }

    /// One level of a v2 cgroup tree: a cgroup's path and the text of its `memory.max` and
    /// `memory.high` (nil when the file is absent, as in the root cgroup).
    public struct V2Level: Sendable, Equatable {
        /// The cgroup path.
        public var path: String
        /// `memory.max`'s text.
        public var max: String?
        /// `memory.high`'s text.
        public var high: String?

        /// Creates a level.
        public init(path: String, max: String?, high: String?) {
            self.path = path
            self.max = max
            self.high = high
        }
    }

    /// Builds v2 figures from the accounted cgroup's `memory.current` and `memory.stat` and the
    /// limit files of `levels`, the cgroup first and then each ancestor up to the mount's root.
    public static func v2(
        path: String, current: String, stat: String, levels: [V2Level]
    ) throws(MemoryParseError) -> CgroupMemory {
        let usage = try CgroupFiles.bytes(current)
        var limit: (bytes: UInt64, path: String)?
        var high: UInt64?
        for level in levels {
            if let text = level.max, let bytes = try CgroupFiles.limit(text), bytes < limit?.bytes ?? .max {
                limit = (bytes, level.path)
            }
            if let text = level.high, let bytes = try CgroupFiles.limit(text), bytes < high ?? .max {
                high = bytes
            }
        }
        let values = CgroupFiles.stat(stat)
        let reclaimable = fileCache(values, inactive: "inactive_file", active: "active_file", mapped: "file_mapped")
        return CgroupMemory(
            version: .v2, path: path, limit: limit?.bytes, limitPath: limit?.path, usage: usage, high: high,
            reclaimable: min(reclaimable, usage))
    }

    /// Builds v1 figures from the cgroup's `memory.usage_in_bytes` and `memory.stat`
    /// (`hierarchical_memory_limit` is the effective limit, a parent's included).
    /// `limitsUpward` — each level's own `memory.limit_in_bytes`, the cgroup first — only
    /// names which cgroup the limit comes from.
    public static func v1(
        path: String, usage: String, stat: String, limitsUpward: [(path: String, limit: String?)] = []
    ) throws(MemoryParseError) -> CgroupMemory {
        let charged = try CgroupFiles.bytes(usage)
        let values = CgroupFiles.stat(stat)
        guard let hierarchical = values["hierarchical_memory_limit"] else {
            throw MemoryParseError("memory.stat has no \"hierarchical_memory_limit\"")
        }
        let limit = hierarchical >= CgroupFiles.unlimitedFrom ? nil : hierarchical
        var limitPath: String?
        if let limit {
            for level in limitsUpward {
                if let text = level.limit, (try? CgroupFiles.limit(text)) == limit {
                    limitPath = level.path
                    break
                }
            }
        }
        let reclaimable = fileCache(
            values, inactive: "total_inactive_file", active: "total_active_file", mapped: "total_mapped_file")
        return CgroupMemory(
            version: .v1, path: path, limit: limit, limitPath: limitPath, usage: charged, high: nil,
            reclaimable: min(reclaimable, charged))
    }

    /// `inactive + active − mapped` file pages, never below zero.
    static func fileCache(_ values: [String: UInt64], inactive: String, active: String, mapped: String) -> UInt64 {
        let lists = (values[inactive] ?? 0) + (values[active] ?? 0)
        let inUse = values[mapped] ?? 0
        return lists > inUse ? lists - inUse : 0
    }

    /// The ancestors of a cgroup path, nearest first, ending with "/":
    /// `/a/b/c` → `["/a/b", "/a", "/"]`.
    public static func ancestors(of path: String) -> [String] {
        var result: [String] = []
        var current = Substring(path)
        while current != "/", !current.isEmpty {
            guard let slash = current.lastIndex(of: "/") else { break }
            current = slash == current.startIndex ? "/" : current[..<slash]
            result.append(String(current))
        }
        return result
    }
}
