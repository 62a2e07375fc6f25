import BatonCore
import CBatonLinux
import Glibc

/// CPU priority and CPU time of a worker's process tree, from /proc.
///
/// Linux keeps a nice value per thread (setpriority on a pid changes that one thread), so
/// giving a tree its priority back means every thread of every process in it: a worker that
/// started threads or forked children while it booted passed its boot nice value to them.
///
/// A thread's nice value weighs against the threads of its own session (where the kernel
/// groups each session for the scheduler: autogroup, `kernel.sched_autogroup_enabled`, in the
/// root CPU cgroup). Workers stay in baton's session, in process groups of their own, so a
/// booting worker's nice value weighs against the workers that serve.
public enum ProcessPriority {
    /// The calling thread's nice value (baton's event-loop thread: the priority workers get back).
    public static var current: Int32 {
        errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        return value == -1 && errno != 0 ? 0 : value
    }

    /// Whether baton may lower a nice value back to `nice` (CAP_SYS_NICE in the initial user
    /// namespace, or an RLIMIT_NICE that allows it): raising a worker's nice value it could not
    /// undo would leave it slow for good. Tried, not inferred: a pid-1 audit found root without
    /// CAP_SYS_NICE (a default container) and root of a user namespace (rootless) taken for
    /// able, and every serving worker left at its boot nice value.
    public static func canLower(to nice: Int32) -> Bool {
        CBatonLinux_may_lower_nice(nice) == 1
    }

    /// Sets every thread of every process in the tree rooted at `root` to `nice`; returns how
    /// many threads could not be set (gone meanwhile: not counted).
    @discardableResult
    public static func set(tree root: pid_t, to nice: Int32) -> Int {
        var failed = 0
        for member in ProcFS.tree(of: root) {
            for tid in threads(of: member) where setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), nice) != 0 {
                if errno != ESRCH { failed += 1 }
            }
        }
        return failed
    }

    /// The nice value of one thread, from /proc/PID/task/TID/stat (field 19); nil when gone.
    public static func nice(of pid: pid_t, thread tid: pid_t? = nil) -> Int32? {
        guard let stat = ProcFS.read("/proc/\(pid)/task/\(tid ?? pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        return rest.count > 16 ? Int32(rest[16]) : nil
    }

    /// The CPU a process tree used and the time its threads waited for one.
    public struct CPUTime: Sendable, Equatable {
        /// CPU time (user and system, reaped children's included), in seconds.
        public var seconds: Double
        /// Time the tree's live threads spent runnable on a run queue, waiting for a CPU
        /// (/proc/PID/task/TID/schedstat, second field), in seconds; 0 where the kernel does
        /// not report it. Threads that exited are not counted.
        public var waitedSeconds: Double

        /// Creates a figure.
        public init(seconds: Double, waitedSeconds: Double) {
            self.seconds = seconds
            self.waitedSeconds = waitedSeconds
        }
    }

    /// The CPU time of the tree rooted at `root` and its threads' wait for a CPU; nil when
    /// it is gone.
    public static func cpuTime(tree root: pid_t) -> CPUTime? {
        var ticks: UInt64 = 0
        var waitedNanoseconds: UInt64 = 0
        var found = false
        for member in ProcFS.tree(of: root) {
            guard let stat = ProcFS.read("/proc/\(member)/stat"), let fields = ProcParsers.statFields(stat) else { continue }
            ticks += fields.cpuTicks
            found = true
            for tid in threads(of: member) {
                // "cpu_ns wait_ns timeslices"
                let schedstat = ProcFS.read("/proc/\(member)/task/\(tid)/schedstat")?.split(separator: " ")
                if let schedstat, schedstat.count >= 2, let waited = UInt64(schedstat[1]) { waitedNanoseconds += waited }
            }
        }
        let hertz = sysconf(Int32(_SC_CLK_TCK))
        guard found, hertz > 0 else { return nil }
        return CPUTime(seconds: Double(ticks) / Double(hertz), waitedSeconds: Double(waitedNanoseconds) / 1e9)
    }

    /// The thread ids of `pid` (itself when /proc cannot list them).
    public static func threads(of pid: pid_t) -> [pid_t] {
        let result = ProcFS.numericEntries(of: "/proc/\(pid)/task")
        return result.isEmpty ? [pid] : result
    }
}
