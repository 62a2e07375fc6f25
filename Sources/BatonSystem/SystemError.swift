import CBatonLinux
import Glibc

/// A failed system call: the call's name, errno, and what it was about.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system call or operation, e.g. "bind".
    public var call: String
    /// The errno value.
    public var errno: Int32
    /// What it was operating on (a path, an address), if useful in a message.
    public var subject: String?

    /// Creates an error from the current thread's errno.
    public init(_ call: String, errno: Int32 = Glibc.errno, subject: String? = nil) {
        self.call = call
        self.errno = errno
        self.subject = subject
    }

    /// `bind 127.0.0.1:80: Permission denied (errno 13)`.
    public var description: String {
        let what = subject.map { " \($0)" } ?? ""
        return "\(call)\(what): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs `body` until it does not fail with EINTR; throws `SystemError` when it
/// returns -1 for another reason.
@discardableResult
public func syscall<T: BinaryInteger>(
    _ name: String, subject: String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw SystemError(name, errno: e, subject: subject)
    }
}

/// Sets O_NONBLOCK on a descriptor.
public func setNonBlocking(_ fd: Int32) throws(SystemError) {
    let flags = try syscall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
    try syscall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
}

/// Sets FD_CLOEXEC on a descriptor.
public func setCloseOnExec(_ fd: Int32) throws(SystemError) {
    let flags = try syscall("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
    try syscall("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
}

/// Writes all of `bytes` to a blocking descriptor (used for small writes to
/// stderr and to pipes whose reader is known to be draining).
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}

/// CLOCK_MONOTONIC now, as a Duration since an arbitrary epoch (boot).
public func monotonicNow() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}

/// CLOCK_REALTIME now, in seconds since the Unix epoch.
public func wallClockNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
