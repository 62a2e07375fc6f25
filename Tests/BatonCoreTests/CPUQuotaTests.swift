import BatonCore
import Testing

/// A CPU audit: under `taskset -c 0`, a 1-CPU cgroup v1 quota or systemd's `CPUQuota=50%`,
/// baton planned its boots for the host's 2 CPUs (`2 boots at once`), and a deploy whose
/// boots took a CPU each failed on readiness timeouts that one at a time did not meet.
@Suite struct CPUQuotaTests {
    static let hybridCgroup = "12:cpu,cpuacct:/system.slice/shop.service\n11:memory:/system.slice/shop.service\n0::/system.slice/shop.service\n"
    static let hybridMounts = """
        30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw
        36 25 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
        37 25 0:33 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
        """

    @Test func aV1QuotaFromTheCgroupOrAnAncestorWhicheverIsSmaller() {
        var files = [
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/shop.service/cpu.cfs_quota_us": "150000\n",
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/shop.service/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_period_us": "100000\n",
        ]
        #expect(CPUQuota.allowed(cgroup: Self.hybridCgroup, mountInfo: Self.hybridMounts, read: { files[$0] }) == 1.5)
        files["/sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_quota_us"] = "50000\n"
        #expect(CPUQuota.allowed(cgroup: Self.hybridCgroup, mountInfo: Self.hybridMounts, read: { files[$0] }) == 0.5)
        files = files.mapValues { $0 == "150000\n" || $0 == "50000\n" ? "-1\n" : $0 }
        #expect(CPUQuota.allowed(cgroup: Self.hybridCgroup, mountInfo: Self.hybridMounts, read: { files[$0] }) == nil, "no quota")
    }

    @Test func aV2QuotaFromCpuMax() {
        let cgroup = "0::/system.slice/shop.service\n"
        let mounts = "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:5 - cgroup2 cgroup2 rw,nsdelegate"
        let files = ["/sys/fs/cgroup/system.slice/shop.service/cpu.max": "50000 100000\n", "/sys/fs/cgroup/system.slice/cpu.max": "max 100000\n"]
        #expect(CPUQuota.allowed(cgroup: cgroup, mountInfo: mounts, read: { files[$0] }) == 0.5)
        #expect(CPUQuota.allowed(cgroup: cgroup, mountInfo: mounts, read: { _ in nil }) == nil, "no cpu controller: no quota")
        // A v1 cpu line wins over the unified one on a hybrid host; without a cpu mount, none.
        #expect(CPUQuota.allowed(cgroup: Self.hybridCgroup, mountInfo: mounts, read: { files[$0] }) == nil)
    }

    @Test func wholeCPUsToPlanFor() {
        #expect(CPUQuota.usable(affinity: 2, quota: nil) == 2)
        #expect(CPUQuota.usable(affinity: 1, quota: nil) == 1, "taskset -c 0")
        #expect(CPUQuota.usable(affinity: 2, quota: 1) == 1)
        #expect(CPUQuota.usable(affinity: 2, quota: 0.5) == 1, "at least one")
        #expect(CPUQuota.usable(affinity: 8, quota: 2.7) == 2, "rounded down")
        #expect(CPUQuota.usable(affinity: 2, quota: 4) == 2)
    }
}
