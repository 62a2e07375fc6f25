import BatonCore
import Glibc

/// Reads the kernel's OOM-kill counter of the memory cgroup a process is charged to: v1
/// `memory.oom_control` (`oom_kill N`), v2 `memory.events` (`oom_kill N`). Both count the kills
/// of the cgroup and its descendants. The file is found once (``init(pid:root:)``); each
/// ``read()`` is one small file read, cheap enough to poll every second.
public struct OOMCounterReader: Sendable {
    /// The counter file, e.g. `/sys/fs/cgroup/memory/system.slice/shop.service/memory.oom_control`.
    public let path: String

    /// Finds the counter file of `pid`'s memory cgroup (nil = this process).
    public init(pid: Int32? = nil, root: String = "/") throws(MemoryReadError) {
        let files = MemoryFiles(root: root)
        let name = pid.map(String.init) ?? "self"
        let member = try files.parse("/proc/\(name)/cgroup", CgroupMembership.parse)
        let mounts = CgroupMount.parseMountInfo(try files.read("/proc/self/mountinfo"))
        let candidates: [String]
        let file: String
        let mount: CgroupMount?
        if let v1 = member.v1MemoryPath {
            (candidates, file) = ([v1], "memory.oom_control")
            mount = CgroupMount.mount(for: v1, version: .v1, in: mounts)
        } else if let v2 = member.unifiedPath {
            // The nearest cgroup with the memory controller is the one charged.
            (candidates, file) = ([v2] + CgroupMemory.ancestors(of: v2), "memory.events")
            mount = CgroupMount.mount(for: v2, version: .v2, in: mounts)
        } else {
            throw .noMemoryCgroup(pid: name, reason: "no cgroup line")
        }
        guard let mount else { throw .noMemoryCgroup(pid: name, reason: "no memory cgroup mount shows its cgroup") }
        for cgroup in candidates {
            guard let directory = mount.directory(of: cgroup) else { continue }
            if files.exists(directory + "/" + file) {
                path = files.path(directory + "/" + file)
                return
            }
        }
        throw .noMemoryCgroup(pid: name, reason: "no \(file) in its cgroup (\(candidates.first ?? "?"))")
    }

    /// The number of OOM kills so far.
    public func read() throws(MemoryReadError) -> UInt64 {
        let text = try MemoryFiles(root: "/").read(path)
        guard let value = CgroupFiles.stat(text)["oom_kill"] else {
            throw .malformed(path: path, problem: "no oom_kill line (kernel older than 4.13?)")
        }
        return value
    }
}
