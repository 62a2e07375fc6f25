import BatonCore

/// Reads the host's memory figures: `/proc/meminfo` and `vm.overcommit_memory`.
public struct HostMemoryReader: Sendable {
    /// The files, under a root directory ("/" on a real host).
    private let files: MemoryFiles

    /// Creates a reader of the files under `root` (tests pass a recorded tree).
    public init(root: String = "/") {
        files = MemoryFiles(root: root)
    }

    /// `MemTotal`, `MemAvailable`, `CommitLimit` and `Committed_AS`.
    public func info() throws(MemoryReadError) -> HostMemoryInfo {
        try files.parse("/proc/meminfo", HostMemoryInfo.parse)
    }

    /// `vm.overcommit_memory`.
    public func overcommitMode() throws(MemoryReadError) -> OvercommitMode {
        try files.parse("/proc/sys/vm/overcommit_memory", OvercommitMode.parse)
    }

    /// Host figures, overcommit mode and the cgroup of `pid` (nil = this process) in one go.
    /// A process without a readable memory cgroup gives `cgroup` nil; other failures throw.
    public func readings(cgroupOf pid: Int32? = nil) throws(MemoryReadError) -> MemoryReadings {
        let cgroup: CgroupMemory?
        do throws(MemoryReadError) {
            cgroup = try CgroupMemoryReader(root: files.root).memory(of: pid)
        } catch .noMemoryCgroup {
            cgroup = nil
        }
        return MemoryReadings(host: try info(), overcommit: try overcommitMode(), cgroup: cgroup)
    }
}
