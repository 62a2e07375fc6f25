import Glibc
import Synchronization

/// Children that a thread other than the event loop spawns and reaps itself
/// (the config parser of a reload, run off the loop). The daemon reaps every
/// other exited child on SIGCHLD; it must leave these alone, or their waiter
/// finds nothing to reap and never learns how they ended. One lock covers the
/// spawn and the registration and the daemon's peek-and-reap, so the daemon
/// never sees such a child before it is registered.
public enum SelfReapedChildren {
    private static let pids = Mutex(Set<pid_t>())

    /// Spawns `request` and registers the child, under the lock.
    public static func spawn(_ request: SpawnRequest) throws(SpawnError) -> ChildProcess {
        try pids.withLock { (set: inout Set<pid_t>) throws(SpawnError) -> ChildProcess in
            let child = try LinuxProcessLauncher().spawn(request)
            set.insert(child.pid)
            return child
        }
    }

    /// Registers an exited child whose zombie another thread reaps (the daemon's reaper
    /// thread): the peek-and-reap leaves it alone until `forget`.
    public static func register(_ pid: pid_t) {
        _ = pids.withLock { $0.insert(pid) }
    }

    /// The child was reaped by its spawner: its pid may be reused from now on.
    public static func forget(_ pid: pid_t) {
        _ = pids.withLock { $0.remove(pid) }
    }

    /// Runs `body` (the daemon's peek-and-reap) with the registered pids, under the lock.
    public static func withRegistered<T>(_ body: (Set<pid_t>) -> T) -> T {
        pids.withLock { body($0) }
    }
}
