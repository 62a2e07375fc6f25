import BatonCore

/// Reads commit charge (private writable mappings, see ``CommitCharge``) of processes and
/// worker trees from `/proc/PID/maps`. `maps` costs no page walk, unlike `smaps_rollup`, but its
/// size grows with the mapping count (a few hundred lines for a typical runtime).
public struct CommitChargeReader: Sendable {
    /// The files, under a root directory ("/" on a real host).
    private let files: MemoryFiles

    /// Creates a reader of the files under `root` (tests pass a recorded tree).
    public init(root: String = "/") {
        files = MemoryFiles(root: root)
    }

    /// The commit charge of one process.
    public func process(_ pid: Int32) throws(MemoryReadError) -> UInt64 {
        CommitCharge.privateWritable(maps: try files.read("/proc/\(pid)/maps"))
    }

    /// The commit charge summed over `pid` and its descendants (found through the real /proc);
    /// members that exit while they are read count as zero. Nil when `pid` itself is gone.
    public func tree(of pid: Int32) -> UInt64? {
        var total: UInt64?
        for member in ProcFS.tree(of: pid) {
            guard let charge = try? process(member) else { continue }
            total = (total ?? 0) + charge
        }
        return total
    }
}
