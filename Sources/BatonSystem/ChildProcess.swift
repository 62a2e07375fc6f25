import Glibc

/// A child that baton started and reaps through its pidfd (a readiness or liveness probe, the
/// upgrade's check, the config parser): its pid and its pidfd, owned. The pidfd is closed
/// exactly once, by ``close()`` once the child was reaped or when the last reference goes, so
/// nothing signals or polls a number the kernel may since have given to another file. A
/// ``SpawnedProcess`` is the launcher's plain record; this is who owns what it returned. Used
/// on one thread at a time (the event loop's, or the caller's).
public final class ChildProcess {
    /// Process id (also its process group id: the child called setsid).
    public let pid: pid_t
    /// The pidfd, until closed.
    private var owned: OwnedDescriptor?

    /// The pidfd's number while it is open; -1 once closed (a signal or poll on it then fails
    /// with EBADF instead of reaching another file).
    public var pidfd: Int32 { owned?.rawValue ?? -1 }

    /// Takes ownership of `spawned`'s pidfd.
    public init(_ spawned: SpawnedProcess) {
        pid = spawned.pid
        owned = OwnedDescriptor(spawned.pidfd)
    }

    /// Closes the pidfd now (the child was reaped, or is left to another reaper); later calls
    /// do nothing.
    public func close() { owned = nil }
}
