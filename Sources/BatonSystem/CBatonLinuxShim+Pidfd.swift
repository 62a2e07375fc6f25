import BatonCore
import CBatonLinux
import Glibc

/// pidfds of processes baton did not start, descriptors taken from them, and
/// exec of an open file (take-over after a crash, `baton upgrade`).
extension CBatonLinuxShim {
    /// pidfd_open: a descriptor naming exactly `pid` (verify it is still the
    /// expected process, e.g. by its start time, after opening it).
    public static func pidfdOpen(_ pid: pid_t) throws(SystemError) -> Int32 {
        try syscall("pidfd_open", subject: "pid \(pid)") { CBatonLinux_pidfd_open(pid) }
    }

    /// pidfd_getfd: a close-on-exec duplicate of descriptor `target` of the
    /// process behind `pidfd`, owned by the caller from the start (closed if it is dropped
    /// after a failed check).
    public static func takeDescriptor(pidfd: Int32, target: Int32) throws(SystemError) -> OwnedDescriptor {
        OwnedDescriptor(try syscall("pidfd_getfd", subject: "fd \(target)") { CBatonLinux_pidfd_getfd(pidfd, target) })
    }

    /// True once the process behind `pidfd` has exited (a zombie counts),
    /// whoever its parent is.
    public static func hasExited(pidfd: Int32) -> Bool {
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1
    }

    /// execveat(fd, "", AT_EMPTY_PATH): replaces this process image with the
    /// open file `fd`; returns only on failure (with errno). `path` is for
    /// the error message.
    public static func execute(fd: Int32, path: String, arguments: [String], environment: [String]) -> SystemError {
        var c: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var e: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        _ = CBatonLinux_execveat_fd(fd, &c, &e)
        let error = SystemError("execveat", subject: path)
        c.forEach { free($0) }
        e.forEach { free($0) }
        return error
    }
}

extension ProcFS {
    /// The start time of `pid` (/proc/PID/stat field 22, clock ticks since
    /// boot), or nil when it is gone or a zombie: with the pid, it names one
    /// process across pid reuse.
    public static func startTime(of pid: pid_t) -> UInt64? {
        guard pid > 0, let text = read("/proc/\(pid)/stat"), let fields = ProcParsers.statFields(text) else { return nil }
        guard fields.state != "Z", fields.state != "X" else { return nil }
        return fields.startTicks
    }
}

/// Worker output pipes that outlive baton.
extension CBatonLinuxShim {
    /// Asks for a pipe capacity of `bytes`, capped by
    /// /proc/sys/fs/pipe-max-size (which root may exceed, but should not need
    /// to); returns the capacity it has, nil if it could not be changed.
    @discardableResult
    public static func enlargePipe(_ fd: Int32, to bytes: Int) -> Int? {
        let maximum = ProcFS.read("/proc/sys/fs/pipe-max-size").flatMap { Int($0.filter(\.isNumber)) }
        let size = Int32(clamping: min(bytes, maximum ?? bytes))
        let result = CBatonLinux_set_pipe_size(fd, size)
        return result > 0 ? Int(result) : nil
    }

    /// True when `fd` is a pipe (or FIFO) opened for reading only.
    public static func isPipeReadEnd(_ fd: Int32) -> Bool { CBatonLinux_is_pipe_read_end(fd) == 1 }
}
