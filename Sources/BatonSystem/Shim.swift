import CBatonLinux
import Glibc

/// Swift faces of the CBatonLinux calls the daemon needs, so BatonDaemon
/// does not import C modules.
public enum CBatonLinuxShim {
    /// PR_SET_CHILD_SUBREAPER: orphaned grandchildren of workers come to baton.
    @discardableResult
    public static func setChildSubreaper() -> Bool { CBatonLinux_set_child_subreaper() == 0 }

    /// Blocks `signals` in the calling thread and returns a signalfd for them.
    public static func signalFD(_ signals: [Int32]) throws(SystemError) -> Int32 {
        try syscall("signalfd") { signals.withUnsafeBufferPointer { CBatonLinux_signalfd($0.baseAddress, Int32($0.count)) } }
    }

    /// An anonymous memory file holding `bytes`, positioned at 0, without
    /// close-on-exec (state handed across an execve).
    public static func memoryFile(name: String, bytes: [UInt8]) throws(SystemError) -> Int32 {
        let fd = try syscall("memfd_create") { CBatonLinux_memfd(name) }
        writeAll(fd, bytes)
        lseek(fd, 0, SEEK_SET)
        return fd
    }

    /// Clears FD_CLOEXEC so `fd` crosses an execve.
    public static func keepAcrossExec(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) }
    }

    /// Replaces this process image; returns only on failure (with errno).
    public static func execute(_ path: String, arguments: [String], environment: [String]) -> SystemError {
        var c: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var e: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        _ = CBatonLinux_execve(path, &c, &e)
        let error = SystemError("execve", subject: path)
        c.forEach { free($0) }
        e.forEach { free($0) }
        return error
    }

    /// Makes stdout line-buffered even when it is a pipe (CI logs).
    public static func lineBufferStdout() { CBatonLinux_line_buffer_stdout() }

    /// The signals `baton serve` reads from its signalfd (blocked in its first thread, so every
    /// thread inherits the mask): SIGCHLD, SIGTERM, SIGINT and SIGHUP act; the others are those
    /// whose default action ends or dumps a process and that nothing sends synchronously, which
    /// baton logs and ignores (``ignoredSignalName(_:)``). A hostile-app audit: `kill -USR1` of
    /// baton (a worker's, or the "reopen your logs" habit of a logrotate script) ended it
    /// silently and orphaned its workers, as did USR2, ALRM, VTALRM, PROF, IO, PWR, XCPU and the
    /// real-time signals; TTIN and TTOU stopped it. A worker gets every signal's default back
    /// (spawn.c).
    public static let supervisorSignals: [Int32] =
        [SIGCHLD, SIGTERM, SIGINT, SIGHUP] + ignoredSignals.map(\.number) + Array(CBatonLinux_sigrtmin()...CBatonLinux_sigrtmax())

    private static let ignoredSignals: [(number: Int32, name: String)] = [
        (SIGQUIT, "SIGQUIT"), (SIGUSR1, "SIGUSR1"), (SIGUSR2, "SIGUSR2"), (SIGALRM, "SIGALRM"), (SIGVTALRM, "SIGVTALRM"),
        (SIGPROF, "SIGPROF"), (SIGIO, "SIGIO"), (SIGPWR, "SIGPWR"), (16, "SIGSTKFLT"), (SIGXCPU, "SIGXCPU"), (SIGXFSZ, "SIGXFSZ"),
        // Stop by default (a habits audit: `kill -TTIN`, gunicorn's and unicorn's "one worker
        // more", stopped a baton run from a terminal, workers left unsupervised, nothing logged).
        // SIGTSTP (Ctrl-Z) keeps its default.
        (SIGTTIN, "SIGTTIN"), (SIGTTOU, "SIGTTOU"),
    ]

    /// The name of a signal baton ignores (`SIGUSR1`, `SIGRTMIN+3`).
    public static func ignoredSignalName(_ sig: Int32) -> String {
        if let known = ignoredSignals.first(where: { $0.number == sig }) { return known.name }
        let rtmin = CBatonLinux_sigrtmin()
        return sig >= rtmin ? "SIGRTMIN+\(sig - rtmin)" : "signal \(sig)"
    }

    /// Blocks `signals` in the calling thread (threads created later inherit it).
    public static func blockSignals(_ signals: [Int32]) {
        _ = signals.withUnsafeBufferPointer { CBatonLinux_block_signals($0.baseAddress, Int32($0.count)) }
    }

    /// The calling thread's blocked mask (bit n-1 = signal n).
    public static func blockedMask() -> UInt64 { CBatonLinux_blocked_mask() }

    /// One pending signal from a signalfd, or 0.
    public static func readSignal(_ fd: Int32, sender: inout pid_t) -> Int32 { CBatonLinux_signalfd_read(fd, &sender) }

    /// An exited, unreaped child's pid, or 0/-1 when none.
    public static func peekExitedChild() -> pid_t { CBatonLinux_peek_exited_child() }

    /// Reaps `pid`.
    public static func reap(_ pid: pid_t) {
        var code: Int32 = 0
        var status: Int32 = 0
        _ = CBatonLinux_reap(pid, &code, &status)
    }

    /// How a process ended.
    public enum Exit: Sendable, Equatable, CustomStringConvertible {
        /// exit(code).
        case exited(Int32)
        /// Killed by a signal.
        case signaled(Int32)

        /// "exit 3" or "signal 9 (Killed)".
        public var description: String {
            switch self {
            case .exited(let c): "exit code \(c)"
            case .signaled(let s): "signal \(s) (\(String(cString: strsignal(s))))"
            }
        }
    }

    /// The exit of the process behind `pidfd`, or nil while it runs.
    /// `reap: false` leaves the zombie (its pid stays reserved).
    public static func exitStatus(pidfd: Int32, reap: Bool) -> Exit? {
        var code: Int32 = 0
        var status: Int32 = 0
        guard CBatonLinux_wait_pidfd(pidfd, reap ? 0 : 1, &code, &status) == 1 else { return nil }
        return code == CLD_EXITED ? .exited(status) : .signaled(status)
    }

    /// pidfd_send_signal: signals exactly that process, never a reused pid.
    @discardableResult
    public static func signal(pidfd: Int32, _ sig: Int32) -> Bool { CBatonLinux_pidfd_send_signal(pidfd, sig) == 0 }

    /// Signals a whole process group.
    @discardableResult
    public static func signalGroup(_ pgid: pid_t, _ sig: Int32) -> Bool { kill(-pgid, sig) == 0 }

    /// SO_PEERCRED.
    public static func peerCredentials(_ fd: Int32) -> (pid: pid_t, uid: uid_t, gid: gid_t)? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard CBatonLinux_peer_cred(fd, &pid, &uid, &gid) == 0 else { return nil }
        return (pid, uid, gid)
    }

    /// SO_PEERGROUPS (supplementary groups of the peer).
    public static func peerGroups(_ fd: Int32) -> [gid_t] {
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: 64)
        if CBatonLinux_peer_groups(fd, &groups, &count) != 0 {
            guard errno == ERANGE, count > 0 else { return [] }
            groups = [gid_t](repeating: 0, count: Int(count))
            guard CBatonLinux_peer_groups(fd, &groups, &count) == 0 else { return [] }
        }
        return Array(groups.prefix(Int(count)))
    }

    /// A datagram with its sender's credentials (``setPassCredentials(_:)`` must have run);
    /// `truncated`: it was longer than `maxBytes`, and `bytes` holds only its start. `sentAt`:
    /// when the kernel queued it (wall clock, seconds since the epoch), nil when it does not say.
    public static func receiveWithCredentials(
        _ fd: Int32, maxBytes: Int = 4096
    ) -> (bytes: [UInt8], pid: pid_t, uid: uid_t, truncated: Bool, sentAt: Double?)? {
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        var truncated: Int32 = 0
        var sent: Int64 = 0
        let n = buffer.withUnsafeMutableBytes {
            CBatonLinux_recv_with_cred(fd, $0.baseAddress, $0.count, &pid, &uid, &gid, &truncated, &sent)
        }
        guard n >= 0 else { return nil }
        return (Array(buffer[0..<n]), pid, uid, truncated != 0, sent > 0 ? Double(sent) / 1e9 : nil)
    }

    /// Turns on SO_PASSCRED and SO_TIMESTAMPNS: each datagram comes with its sender's
    /// credentials and the time it was queued.
    public static func setPassCredentials(_ fd: Int32) throws(SystemError) {
        try syscall("setsockopt(SO_PASSCRED, SO_TIMESTAMPNS)") { CBatonLinux_set_passcred(fd) }
    }

    /// A pipe with both ends close-on-exec; the read end non-blocking. Both ends are owned from
    /// here (closed if making the read end non-blocking fails).
    public static func outputPipe() throws(SystemError) -> OwnedPipe {
        var fds: [Int32] = [-1, -1]
        try syscall("pipe2") { CBatonLinux_pipe_cloexec(&fds) }
        let pipe = OwnedPipe(read: fds[0], write: fds[1])
        try setNonBlocking(pipe.read.rawValue)
        return pipe
    }
}
