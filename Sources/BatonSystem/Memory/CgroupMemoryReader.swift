import BatonCore

/// Reads the memory figures of the cgroup a process is charged to, on cgroup v2, v1 and
/// hybrid hosts (where the memory controller is usually v1: a v1 `memory` line in
/// `/proc/PID/cgroup` wins over the `0::` line).
///
/// The cgroup's directory is found from `/proc/self/mountinfo` (the mounts as this process
/// sees them): mount point + the cgroup path below the mount's root. Limits are walked up only
/// as far as the mount shows: inside a cgroup namespace the ancestors' limits are invisible,
/// and so is what they would add.
///
/// v2: usage `memory.current`; limit the smallest `memory.max` from the cgroup up; `memory.high`
/// likewise. When the memory controller is not enabled for the cgroup itself (no
/// `memory.current`), its charges go to the nearest ancestor that has it, which is then the
/// cgroup reported. v1: usage `memory.usage_in_bytes`, limit `hierarchical_memory_limit` from
/// `memory.stat` (a parent's limit included). See ``CgroupMemory`` for `reclaimable`.
public struct CgroupMemoryReader: Sendable {
    /// The files, under a root directory ("/" on a real host).
    private let files: MemoryFiles

    /// Creates a reader of the files under `root` (tests pass a recorded tree).
    public init(root: String = "/") {
        files = MemoryFiles(root: root)
    }

    /// The cgroup memberships of `pid` (nil = this process).
    public func membership(of pid: Int32? = nil) throws(MemoryReadError) -> CgroupMembership {
        try files.parse("/proc/\(Self.name(pid))/cgroup", CgroupMembership.parse)
    }

    /// The memory figures of the cgroup `pid` (nil = this process) is charged to.
    public func memory(of pid: Int32? = nil) throws(MemoryReadError) -> CgroupMemory {
        let member = try membership(of: pid)
        let mounts = CgroupMount.parseMountInfo(try files.read("/proc/self/mountinfo"))
        if let path = member.v1MemoryPath {
            guard let mount = CgroupMount.mount(for: path, version: .v1, in: mounts) else {
                throw .noMemoryCgroup(pid: Self.name(pid), reason: "no cgroup v1 memory mount shows \(path)")
            }
            return try v1(path: path, mount: mount)
        }
        guard let path = member.unifiedPath else {
            throw .noMemoryCgroup(pid: Self.name(pid), reason: "no cgroup line")
        }
        guard let mount = CgroupMount.mount(for: path, version: .v2, in: mounts) else {
            throw .noMemoryCgroup(pid: Self.name(pid), reason: "no cgroup2 mount shows \(path)")
        }
        return try v2(path: path, mount: mount, pid: pid)
    }

    /// v2 figures for `path` under `mount`.
    private func v2(path: String, mount: CgroupMount, pid: Int32?) throws(MemoryReadError) -> CgroupMemory {
        let visible = ([path] + CgroupMemory.ancestors(of: path)).filter { mount.directory(of: $0) != nil }
        // The nearest cgroup with the memory controller enabled is the one charged.
        guard let index = visible.firstIndex(where: { files.exists(directory($0, mount) + "/memory.current") })
        else {
            throw .noMemoryCgroup(
                pid: Self.name(pid), reason: "the memory controller is not enabled for \(path) or its parents")
        }
        let charged = visible[index]
        let dir = directory(charged, mount)
        var levels: [CgroupMemory.V2Level] = []
        for level in visible[index...] {
            let levelDir = directory(level, mount)
            levels.append(
                CgroupMemory.V2Level(
                    path: level, max: try files.readIfPresent(levelDir + "/memory.max"),
                    high: try files.readIfPresent(levelDir + "/memory.high")))
        }
        let current = try files.read(dir + "/memory.current")
        let stat = try files.read(dir + "/memory.stat")
        do throws(MemoryParseError) {
            return try CgroupMemory.v2(path: charged, current: current, stat: stat, levels: levels)
        } catch {
            throw .malformed(path: files.path(dir), problem: error.problem)
        }
    }

    /// v1 figures for `path` under `mount`.
    private func v1(path: String, mount: CgroupMount) throws(MemoryReadError) -> CgroupMemory {
        let dir = directory(path, mount)
        let usage = try files.read(dir + "/memory.usage_in_bytes")
        let stat = try files.read(dir + "/memory.stat")
        var limits: [(path: String, limit: String?)] = []
        for level in [path] + CgroupMemory.ancestors(of: path) where mount.directory(of: level) != nil {
            limits.append((level, try files.readIfPresent(directory(level, mount) + "/memory.limit_in_bytes")))
        }
        do throws(MemoryParseError) {
            return try CgroupMemory.v1(path: path, usage: usage, stat: stat, limitsUpward: limits)
        } catch {
            throw .malformed(path: files.path(dir), problem: error.problem)
        }
    }

    /// The directory of a cgroup the mount shows (callers checked that it does).
    private func directory(_ path: String, _ mount: CgroupMount) -> String {
        mount.directory(of: path) ?? mount.mountPoint
    }

    /// `self` or the pid, for /proc paths and messages.
    private static func name(_ pid: Int32?) -> String { pid.map(String.init) ?? "self" }
}
