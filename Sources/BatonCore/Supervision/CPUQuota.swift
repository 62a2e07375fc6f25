/// The CPUs a cgroup's quota allows, from `/proc/self/cgroup`, `/proc/self/mountinfo` and the
/// quota files: v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none), v2 `cpu.max`
/// (`max 100000`: none; `50000 100000`: half a CPU), the smallest from the cgroup up to the
/// mount's root. A CPU audit: under `taskset -c 0`, a 1-CPU cgroup quota or systemd's
/// `CPUQuota=50%`, baton planned its boots for the host's 2 CPUs, and a deploy whose boots
/// took a CPU each failed on readiness timeouts that one boot at a time did not meet.
public enum CPUQuota {
    /// The CPUs the quota allows (a fraction), nil when no quota applies or none is readable.
    /// `read` returns a file's text (nil when absent).
    public static func allowed(cgroup: String, mountInfo: String, read: (String) -> String?) -> Double? {
        guard let (path, version) = cpuCgroup(cgroup) else { return nil }
        guard let mount = mount(for: path, version: version, in: mountInfo) else { return nil }
        var smallest: Double?
        var level = path
        while true {
            if let directory = directory(of: level, root: mount.root, mountPoint: mount.point), let cpus = quota(in: directory, version: version, read: read) {
                smallest = min(smallest ?? cpus, cpus)
            }
            guard level != "/", level != mount.root, let slash = level.lastIndex(of: "/") else { break }
            level = slash == level.startIndex ? "/" : String(level[..<slash])
        }
        return smallest
    }

    /// Whole CPUs to plan for: the fewer of `affinity` and the quota rounded down, at least 1
    /// (as Go's automaxprocs).
    public static func usable(affinity: Int, quota: Double?) -> Int {
        max(1, min(affinity, quota.map { Int($0.rounded(.down)) } ?? affinity))
    }

    /// The path of the hierarchy that holds the `cpu` controller: a v1 line naming `cpu`, else
    /// the `0::` line.
    static func cpuCgroup(_ text: String) -> (path: String, version: Int)? {
        var unified: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[1].split(separator: ",").contains("cpu") { return (String(fields[2]), 1) }
            if fields[0] == "0" && fields[1].isEmpty { unified = String(fields[2]) }
        }
        return unified.map { ($0, 2) }
    }

    /// The mount that shows `path`: cgroup2, or a v1 `cgroup` mount carrying `cpu`.
    static func mount(for path: String, version: Int, in mountInfo: String) -> (root: String, point: String)? {
        var best: (root: String, point: String)?
        for line in mountInfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 1 < fields.count else { continue }
            let type = fields[dash + 1]
            let options = dash + 3 < fields.count ? fields[dash + 3].split(separator: ",") : []
            guard version == 2 ? type == "cgroup2" : type == "cgroup" && options.contains("cpu") else { continue }
            let root = CgroupMount.unescape(fields[3])
            let point = CgroupMount.unescape(fields[4])
            guard directory(of: path, root: root, mountPoint: point) != nil, root.count >= (best?.root.count ?? -1) else { continue }
            best = (root, point)
        }
        return best
    }

    /// The directory of `path` under a mount of `root` at `mountPoint`, nil when not shown.
    static func directory(of path: String, root: String, mountPoint: String) -> String? {
        CgroupMount(version: .v2, root: root, mountPoint: mountPoint).directory(of: path)
    }

    /// The quota of one cgroup directory, in CPUs, nil for none.
    static func quota(in directory: String, version: Int, read: (String) -> String?) -> Double? {
        func number(_ text: String?) -> Double? { text.flatMap { Double(CgroupFiles.trimmed($0)) } }
        if version == 2 {
            guard let fields = read(directory + "/cpu.max").map(CgroupFiles.trimmed)?.split(separator: " "), fields.count == 2,
                let quota = Double(fields[0]), let period = Double(fields[1]), period > 0
            else { return nil }
            return quota / period
        }
        guard let quota = number(read(directory + "/cpu.cfs_quota_us")), quota > 0, let period = number(read(directory + "/cpu.cfs_period_us")), period > 0
        else { return nil }
        return quota / period
    }
}
