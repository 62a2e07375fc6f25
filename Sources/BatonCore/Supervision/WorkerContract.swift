/// What baton places in every worker besides its listening sockets, fixed
/// numbers a worker must leave alone.
public enum WorkerContract {
    /// A duplicate of the read end of the worker's own stdout/stderr pipe.
    /// baton reads its output from its own copy; this one exists only so the
    /// pipe keeps a reader when baton dies outside systemd: without it the
    /// worker's next log line raises SIGPIPE and kills it. The next
    /// `baton serve` takes it with pidfd_getfd and relays the orphan's output.
    /// High, so it never collides with fds 3.. (the sockets), and below 1024,
    /// the usual RLIMIT_NOFILE soft limit (above the limit it is left out).
    public static let outputReaderFD: Int32 = 1000

    /// Capacity asked for each worker's output pipe (F_SETPIPE_SZ, capped by
    /// /proc/sys/fs/pipe-max-size): what an orphan can write before the next
    /// baton drains it without blocking (the default 64 KiB is a few hundred
    /// log lines).
    public static let outputPipeCapacity = 1 << 20
}
