import BatonCore
import CBatonLinux
import Glibc

/// The CPUs baton may use: the online ones, fewer under a CPU affinity (`taskset`, systemd's
/// `CPUAffinity=`) or a cgroup quota (`CPUQuota=`, a container's CPU limit), as `nproc` and Go's
/// automaxprocs count them (``CPUQuota``).
public enum CPUCount {
    /// The host's online CPUs.
    public static var online: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// How many CPUs this process may run on (its affinity), the online ones if unknown.
    public static var affinity: Int {
        let count = Int(CBatonLinux_affinity_cpus())
        return count > 0 ? count : online
    }

    /// The CPUs its cgroup's quota allows (a fraction), nil without a quota.
    public static var quota: Double? {
        guard let cgroup = ProcFS.read("/proc/self/cgroup"), let mountInfo = ProcFS.read("/proc/self/mountinfo") else { return nil }
        return CPUQuota.allowed(cgroup: cgroup, mountInfo: mountInfo, read: { ProcFS.read($0) })
    }

    /// Whole CPUs to plan for (at least 1).
    public static var usable: Int { CPUQuota.usable(affinity: affinity, quota: quota) }
}
