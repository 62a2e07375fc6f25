import BatonSystem
import BatonTestSupport
import CBatonLinux
import Glibc
import Testing

/// A counting event one thread signals and another waits on with a bound:
/// one byte per signal in a non-blocking pipe, so waits are events, never sleeps.
final class Latch: Sendable {
    /// Read and write ends (non-blocking, close-on-exec).
    private let fds: (read: Int32, write: Int32)

    init() {
        var pair: [Int32] = [-1, -1]
        precondition(CBatonLinux_pipe_cloexec(&pair) == 0, "pipe2 failed")
        for fd in pair { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        fds = (pair[0], pair[1])
    }

    deinit {
        close(fds.read)
        close(fds.write)
    }

    func signal() {
        var one: UInt8 = 1
        _ = write(fds.write, &one, 1)
    }

    /// Consumes one signal; false if none came within `timeout`.
    func wait(timeout: Duration) -> Bool {
        let deadline = monotonicNow() + timeout
        while true {
            var value: UInt8 = 0
            if read(fds.read, &value, 1) == 1 { return true }
            let left = deadline - monotonicNow()
            if left <= .zero { return false }
            var pfd = pollfd(fd: fds.read, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, Int32(clamping: left.components.seconds * 1000 + 1))
        }
    }

    /// Consumes `count` signals within one overall `timeout`.
    func wait(count: Int, timeout: Duration) -> Bool {
        let deadline = monotonicNow() + timeout
        for _ in 0..<count where !wait(timeout: max(deadline - monotonicNow(), .zero)) { return false }
        return true
    }
}

/// Runs `body` on a fresh pthread (so its signal mask changes stay there) and returns its result.
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
    let result = Protected<T?>(nil)
    let thread = Thread {
        let value = body()
        result.withLock { $0 = value }
    }
    thread.join()
    return result.withLock { $0 }!
}

/// What /proc/self/fd/N points to in this process ("pipe:[123]", "socket:[456]", a path).
func fdTarget(_ fd: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
    return n < 0 ? "" : String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Waits (bounded) until the process behind `pidfd` has exited; true if it did.
func waitForExit(pidfd: Int32, timeout: Duration) -> Bool {
    var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
    let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    while true {
        let r = poll(&pfd, 1, ms)
        if r < 0 && errno == EINTR { continue }
        return r == 1
    }
}

/// Kills (if still running), reaps and closes a process spawned by a test; returns how it ended.
@discardableResult
func finish(_ process: ChildProcess, signal: Int32 = SIGKILL) -> CBatonLinuxShim.Exit? {
    defer { process.close() }
    if CBatonLinuxShim.exitStatus(pidfd: process.pidfd, reap: false) == nil {
        CBatonLinuxShim.signal(pidfd: process.pidfd, signal)
    }
    guard waitForExit(pidfd: process.pidfd, timeout: .seconds(10)) else {
        CBatonLinuxShim.signal(pidfd: process.pidfd, SIGKILL)
        _ = waitForExit(pidfd: process.pidfd, timeout: .seconds(10))
        return CBatonLinuxShim.exitStatus(pidfd: process.pidfd, reap: true)
    }
    return CBatonLinuxShim.exitStatus(pidfd: process.pidfd, reap: true)
}

/// A pipe with both ends close-on-exec (the read end non-blocking).
func makePipe() throws -> (read: Int32, write: Int32) {
    let pipe = try CBatonLinuxShim.outputPipe()
    return (pipe.read.release(), pipe.write.release())  // the caller closes them
}

/// A blocking pipe with both ends close-on-exec (a child's `read` waits on it).
func makeBlockingPipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    try syscall("pipe2") { CBatonLinux_pipe_cloexec(&fds) }
    return (fds[0], fds[1])
}

/// A temporary directory removed when the closure returns.
func withTemporaryDirectory<T>(_ tag: String, _ body: (String) throws -> T) rethrows -> T {
    let dir = TestPaths.temporaryDirectory(tag)
    defer { TestPaths.remove(dir) }
    return try body(dir)
}

/// The environment children of the tests get (no NOTIFY_SOCKET/LISTEN_* of the runner).
let childEnvironment = TestPaths.cleanEnvironment()

/// The system python3 (not a pyenv shim: a bash script would add a process and fds).
let python3 = "/usr/bin/python3"
