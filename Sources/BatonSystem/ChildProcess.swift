import Glibc

/// A child that baton started and watches through its pidfd (a worker, a mold, a readiness or
/// liveness probe, the upgrade's check, the config parser), as every launcher hands it out,
/// or a crashed baton's orphaned worker whose pidfd baton opened: its pid and its pidfd,
/// owned. The pidfd is
/// closed exactly once, by ``close()`` once the child was reaped or when the last reference
/// goes, so nothing signals or polls a number the kernel may since have given to another file.
/// Used on one thread at a time (the event loop's, or the caller's).
public final class ChildProcess {
    /// Process id (also its process group id: the child called setpgid).
    public let pid: pid_t
    /// With `SpawnRequest.memoryMerge`: the errno of a refused PR_SET_MEMORY_MERGE (EINVAL
    /// before Linux 6.4), 0 when the child was marked (or not asked to be).
    public let memoryMergeErrno: Int32
    /// The pidfd, until closed.
    private var owned: OwnedDescriptor?

    /// The pidfd's number while it is open; -1 once closed (a signal or poll on it then fails
    /// with EBADF instead of reaching another file).
    public var pidfd: Int32 { owned?.rawValue ?? -1 }

    /// Takes ownership of `pidfd`, a pidfd naming `pid`.
    public init(pid: pid_t, pidfd: consuming OwnedDescriptor, memoryMergeErrno: Int32 = 0) {
        self.pid = pid
        self.memoryMergeErrno = memoryMergeErrno
        owned = consume pidfd
    }

    /// Closes the pidfd now (the child was reaped, or is left to another reaper); later calls
    /// do nothing.
    public func close() { owned = nil }
}
