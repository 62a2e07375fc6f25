/// Which cgroups a process belongs to, from `/proc/PID/cgroup`, as far as memory is concerned.
///
/// A pure v2 host has one line `0::/path`. A v1 host has `N:controllers:/path` lines, one per
/// hierarchy. A hybrid host has both; a controller lives in one hierarchy only, so a v1 line
/// naming `memory` means the memory controller is v1 there, whatever the v2 line says.
public struct CgroupMembership: Sendable, Equatable {
    /// The path in the unified (v2) hierarchy, from the `0::` line.
    public var unifiedPath: String?
    /// The path in the v1 hierarchy that holds the `memory` controller.
    public var v1MemoryPath: String?

    /// Creates a membership.
    public init(unifiedPath: String?, v1MemoryPath: String?) {
        self.unifiedPath = unifiedPath
        self.v1MemoryPath = v1MemoryPath
    }

    /// The hierarchy memory is accounted in: v1 when a v1 line names `memory`, else v2.
    public var memoryVersion: CgroupMemory.Version? {
        if v1MemoryPath != nil { return .v1 }
        return unifiedPath != nil ? .v2 : nil
    }

    /// Parses `/proc/PID/cgroup`. Paths may contain `:`, so only the first two are separators.
    public static func parse(_ text: String) throws(MemoryParseError) -> CgroupMembership {
        var result = CgroupMembership(unifiedPath: nil, v1MemoryPath: nil)
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { throw MemoryParseError("malformed line \"\(line.prefix(80))\"") }
            let path = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                result.unifiedPath = path
            } else if fields[1].split(separator: ",").contains("memory") {
                result.v1MemoryPath = path
            }
        }
        guard result.memoryVersion != nil else {
            throw MemoryParseError("no cgroup v2 line and no v1 line with the memory controller")
        }
        return result
    }
}

/// A cgroup file system mount from `/proc/self/mountinfo`: a cgroup2 mount, or a v1 mount
/// carrying the `memory` controller.
public struct CgroupMount: Sendable, Equatable {
    /// v2 (`cgroup2`) or v1 with the memory controller.
    public var version: CgroupMemory.Version
    /// The cgroup the mount shows at its mount point ("/" unless bind-mounted or namespaced).
    public var root: String
    /// Where it is mounted, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/memory`.
    public var mountPoint: String

    /// Creates a mount.
    public init(version: CgroupMemory.Version, root: String, mountPoint: String) {
        self.version = version
        self.root = root
        self.mountPoint = mountPoint
    }

    /// The cgroup mounts in `/proc/self/mountinfo`, in file order. Lines are
    /// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`;
    /// paths escape space, tab, newline and backslash as octal (`\040`).
    public static func parseMountInfo(_ text: String) -> [CgroupMount] {
        var mounts: [CgroupMount] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 1 < fields.count
            else { continue }
            let fsType = fields[dash + 1]
            let superOptions = dash + 3 < fields.count ? fields[dash + 3].split(separator: ",") : []
            let version: CgroupMemory.Version
            if fsType == "cgroup2" {
                version = .v2
            } else if fsType == "cgroup", superOptions.contains("memory") {
                version = .v1
            } else {
                continue
            }
            mounts.append(
                CgroupMount(version: version, root: unescape(fields[3]), mountPoint: unescape(fields[4])))
        }
        return mounts
    }

    /// The directory of `cgroupPath` under this mount, or nil when the mount does not show it
    /// (its root is not an ancestor of the path).
    public func directory(of cgroupPath: String) -> String? {
        let base = mountPoint == "/" ? "" : mountPoint
        if root == "/" { return cgroupPath == "/" ? mountPoint : base + cgroupPath }
        if cgroupPath == root { return mountPoint }
        guard cgroupPath.hasPrefix(root + "/") else { return nil }
        return base + cgroupPath.dropFirst(root.count)
    }

    /// Picks the mount that shows `cgroupPath` for `version`; with several (bind mounts), the
    /// one whose root is the deepest ancestor of the path.
    public static func mount(
        for cgroupPath: String, version: CgroupMemory.Version, in mounts: [CgroupMount]
    ) -> CgroupMount? {
        mounts.filter { $0.version == version && $0.directory(of: cgroupPath) != nil }
            .max { $0.root.count < $1.root.count }
    }

    /// Undoes mountinfo's octal escapes (`\040` → space).
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
                utf8[(i + 1)...(i + 3)].allSatisfy({ (0x30...0x37).contains($0) }),
                let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Parsers for cgroup memory files, pure so that recorded trees can be fixtures.
public enum CgroupFiles {
    /// Values at or above this mean "no limit": v1 reports `PAGE_COUNTER_MAX` pages
    /// (9223372036854771712 on 4 KiB pages), and nobody sets a real limit of 4 EiB.
    public static let unlimitedFrom: UInt64 = 1 << 62

    /// A limit file (`memory.max`, `memory.high`, `memory.limit_in_bytes`): nil for `max` or a
    /// value ≥ 2^62 (unlimited), else the bytes.
    public static func limit(_ text: String) throws(MemoryParseError) -> UInt64? {
        let value = trimmed(text)
        if value == "max" { return nil }
        guard let bytes = UInt64(value) else {
            throw MemoryParseError("expected a byte count or \"max\", got \"\(value.prefix(30))\"")
        }
        return bytes >= unlimitedFrom ? nil : bytes
    }

    /// A single byte count (`memory.current`, `memory.usage_in_bytes`).
    public static func bytes(_ text: String) throws(MemoryParseError) -> UInt64 {
        let value = trimmed(text)
        guard let bytes = UInt64(value) else {
            throw MemoryParseError("expected a byte count, got \"\(value.prefix(30))\"")
        }
        return bytes
    }

    /// `memory.stat`: `name value` lines (v1 and v2 alike).
    public static func stat(_ text: String) -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let value = UInt64(parts[1]) else { continue }
            values[String(parts[0])] = value
        }
        return values
    }

    /// The text without surrounding whitespace.
    static func trimmed(_ text: String) -> Substring {
        var s = Substring(text)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return s
    }
}
