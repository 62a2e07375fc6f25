import BatonSystem
import CBatonLinux
import Glibc
import Synchronization

/// Paths and small helpers shared by the suites.
public enum TestPaths {
    /// The package's root folder, found from this file's path (Tests/BatonTestSupport/TestProcess.swift).
    public static let packageRoot: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    /// The folder holding the built products (the test runner lives there too).
    public static let buildDirectory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = String(decoding: buffer[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // .build/<triple>/debug/batonPackageTests.xctest
        return String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)])
    }()

    /// The private copies the current test runs on, if its suite asked for them: then
    /// `executable` names the copy, so the baton, workers and CLI calls the test starts map
    /// no file of the build or of the toolchain (see `PrivateBinaries`).
    @TaskLocal public static var binaries: PrivateBinaries?

    /// A built executable of this package (its private copy inside a `binaries` scope).
    public static func executable(_ name: String) -> String { binaries?.executable(name) ?? buildDirectory + "/" + name }

    /// A fresh private directory under /tmp (short: unix socket paths are limited to 107 bytes).
    public static func temporaryDirectory(_ tag: String = "t") -> String {
        var template = Array("/tmp/baton-\(tag)-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    /// rm -rf (test directories only).
    public static func remove(_ path: String) {
        _ = try? TestProcess.run(["/bin/rm", "-rf", path], timeout: .seconds(10))
    }

    /// Writes a file (creating or truncating it).
    ///
    /// An executable (a mode with an x bit) is never open for writing in this process: a child
    /// that another test spawns copies every descriptor this process holds at that instant and
    /// keeps the copy until its execve, and an execve of a file some process holds open for
    /// writing fails with ETXTBSY ("Text file busy": a config parser script failed so, once in
    /// a whole suite). The text goes to a side file, and `cp`, a process of its own, makes the
    /// executable from it.
    public static func write(_ path: String, _ text: String, mode: mode_t = 0o644) {
        guard mode & 0o111 != 0 else {
            writeFile(path, text, mode: mode)
            return
        }
        let side = path + ".text"
        writeFile(side, text, mode: 0o600)
        let copied = try? TestProcess.run(["/bin/cp", side, path], timeout: .seconds(30))
        precondition(copied?.code == 0, "cannot write \(path): \(copied?.stderr ?? "cp did not run")")
        unlink(side)
        precondition(chmod(path, mode) == 0, "cannot chmod \(path)")
    }

    private static func writeFile(_ path: String, _ text: String, mode: mode_t) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        precondition(fd >= 0, "cannot write \(path)")
        writeAll(fd, Array(text.utf8))
        fchmod(fd, mode)
        close(fd)
    }

    /// This process's environment minus what would confuse a child baton
    /// (a NOTIFY_SOCKET or LISTEN_* of whoever runs the tests).
    public static func cleanEnvironment(adding extra: [String: String] = [:]) -> [String] {
        var result: [String] = []
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            p += 1
            let name = String(s.prefix { $0 != "=" })
            if name == "NOTIFY_SOCKET" || name.hasPrefix("LISTEN_") || name.hasPrefix("WATCHDOG_") || extra[name] != nil { continue }
            result.append(s)
        }
        return result + extra.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}

/// The end of a command run to completion.
public struct CommandResult: Sendable {
    /// Exit code (128+signal if killed).
    public var code: Int32
    /// Everything it wrote to stdout.
    public var stdout: String
    /// Everything it wrote to stderr.
    public var stderr: String

    /// Creates a result.
    public init(code: Int32, stdout: String, stderr: String) {
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// A child process of the test with its output collected by a reader thread,
/// so tests wait on events (a line appearing, the process exiting) instead of
/// sleeping. Always reaped: `stop()` or `wait()` before the test ends.
public final class TestProcess: @unchecked Sendable {
    // @unchecked: `lines`/`stdoutBytes`/`exit` are guarded by `state`; the
    // rest is immutable after init.
    public let pid: pid_t
    /// The child and its pidfd (closed with this object).
    private let process: ChildProcess
    var pidfd: Int32 { process.pidfd }
    private let box = Protected(State())
    private let readers: [Thread]
    private let joined = Mutex(false)

    private struct State {
        var stderrLines: [String] = []
        var stdoutBytes: [UInt8] = []
        var exit: Int32?
        /// The signal that killed it (nil: it exited, or runs).
        var signal: Int32?
        /// The stderr reader saw end-of-file: every line written is in `stderrLines`.
        var stderrDrained = false
        /// The stdout reader saw end-of-file: every byte written is in `stdoutBytes`.
        var stdoutDrained = false
    }

    /// Starts `argv` with `environment`, stdout and stderr captured.
    public init(
        _ argv: [String], environment: [String]? = nil, directory: String? = nil, passFDs: [Int32] = [], setListenPID: Bool = false,
        credentials: Credentials? = nil, journalStream: Bool = false
    ) throws {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard CBatonLinux_pipe_cloexec(&outPipe) == 0, CBatonLinux_pipe_cloexec(&errPipe) == 0 else {
            throw SystemError("pipe2")
        }
        var environment = environment ?? TestPaths.cleanEnvironment()
        if journalStream {
            // Pretend stderr is the journal: JOURNAL_STREAM names its dev:ino.
            var st = stat()
            fstat(errPipe[1], &st)
            environment.append("JOURNAL_STREAM=\(st.st_dev):\(st.st_ino)")
        }
        var request = SpawnRequest(
            argv: argv, environment: environment, directory: directory, passFDs: passFDs,
            setListenPID: setListenPID, stdout: outPipe[1], stderr: errPipe[1], credentials: credentials)
        // A session of its own, as systemd or an ssh login starts baton: apart from the test's
        // load clients (the kernel schedules each session as a group).
        request.ownSession = true
        do {
            process = try LinuxProcessLauncher().spawn(request)
        } catch {
            outPipe.forEach { close($0) }
            errPipe.forEach { close($0) }
            throw error
        }
        close(outPipe[1])
        close(errPipe[1])
        pid = process.pid
        let outFD = outPipe[0]
        let errFD = errPipe[0]
        let box = self.box
        readers = [
            Thread {
                TestProcess.readAll(outFD) { chunk in box.withLock { $0.stdoutBytes += chunk } }
                box.withLock { $0.stdoutDrained = true }
            },
            Thread {
                var partial: [UInt8] = []
                TestProcess.readAll(errFD) { chunk in
                    partial += chunk
                    var lines: [String] = []
                    while let nl = partial.firstIndex(of: 0x0A) {
                        lines.append(String(decoding: partial[..<nl], as: UTF8.self))
                        partial.removeSubrange(...nl)
                    }
                    if !lines.isEmpty { box.withLock { $0.stderrLines += lines } }
                }
                box.withLock { $0.stderrDrained = true }
            },
        ]
    }

    private static func readAll(_ fd: Int32, _ sink: ([UInt8]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            sink(Array(buffer[0..<n]))
        }
        close(fd)
    }

    /// Lines written to stderr so far.
    public var stderrLines: [String] { box.withLock { $0.stderrLines } }
    /// stdout so far.
    public var stdout: String { box.withLock { String(decoding: $0.stdoutBytes, as: UTF8.self) } }

    /// Waits until a stderr line satisfies `match`; returns it, or nil on timeout.
    @discardableResult
    public func waitForLine(timeout: Duration, _ match: (String) -> Bool) -> String? {
        var seen = 0
        return waitForOutput(timeout: timeout, drained: \.stderrDrained) {
            let lines = stderrLines
            defer { seen = lines.count }
            return lines[seen...].first(where: match)
        }
    }

    /// Waits until stdout contains `text`; false on timeout or exit.
    public func waitForStdout(containing text: String, timeout: Duration) -> Bool {
        waitForOutput(timeout: timeout, drained: \.stdoutDrained) { stdout.contains(text) ? true : nil } ?? false
    }

    /// Asks `probe` until it answers, the deadline passes, or the process exited and its reader
    /// reached end-of-file (`drained`): the exit can be seen before the reader thread has read
    /// the last output. 2 s after the exit at most, if a stray child holds the pipe.
    private func waitForOutput<T>(timeout: Duration, drained: KeyPath<State, Bool>, _ probe: () -> T?) -> T? {
        let deadline = monotonicNow() + timeout
        var exitedAt: Duration?
        while true {
            if let hit = probe() { return hit }
            let now = monotonicNow()
            if now >= deadline { return nil }
            if exitCode != nil {
                let exited = exitedAt ?? now
                exitedAt = exited
                if box.withLock({ $0[keyPath: drained] }) || now - exited >= .seconds(2) { return probe() }
                _ = poll(nil, 0, 5)
            } else {
                // Wake on new output or exit: poll the pidfd briefly (an event, bounded).
                var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, 20)
            }
        }
    }

    /// Waits until a stderr line contains `text`.
    @discardableResult
    public func waitForLine(containing text: String, timeout: Duration) -> String? {
        waitForLine(timeout: timeout) { $0.contains(text) }
    }

    /// The exit code once it exited (reaps it), or nil while it runs.
    public var exitCode: Int32? {
        box.withLock { s in
            if let e = s.exit { return e }
            guard let exit = CBatonLinuxShim.exitStatus(pidfd: pidfd, reap: true) else { return nil }
            switch exit {
            case .exited(let c): s.exit = c
            case .signaled(let sig):
                s.exit = 128 + sig
                s.signal = sig
            }
            return s.exit
        }
    }

    /// The signal that killed it once it is gone (nil: it exited with a code, or runs); its
    /// `exitCode` reads 128 + that signal.
    public var killedBy: Int32? {
        _ = exitCode
        return box.withLock { $0.signal }
    }

    /// Waits for the exit (up to `timeout`) on the pidfd, without joining the output readers:
    /// what the process wrote may still be on its way to `stderrLines` and `stdout`. Nil if
    /// still running.
    @discardableResult
    public func waitForExit(timeout: Duration) -> Int32? {
        let deadline = monotonicNow() + timeout
        while exitCode == nil {
            let left = deadline - monotonicNow()
            if left <= .zero { return nil }
            var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(clamping: left.components.seconds * 1000 + 1)
            _ = poll(&pfd, 1, min(ms, 1000))
        }
        return exitCode
    }

    /// Waits for the exit (up to `timeout`) and for the output readers to finish; nil if still
    /// running.
    @discardableResult
    public func wait(timeout: Duration) -> Int32? {
        guard waitForExit(timeout: timeout) != nil else { return nil }
        let first = joined.withLock { j in
            defer { j = true }
            return !j
        }
        if first { readers.forEach { $0.join() } }
        return exitCode
    }

    /// Sends a signal (through the pidfd: never a reused pid).
    public func signal(_ sig: Int32) { CBatonLinuxShim.signal(pidfd: pidfd, sig) }

    /// SIGTERM, wait up to `timeout`, then SIGKILL; always reaps.
    @discardableResult
    public func stop(timeout: Duration = .seconds(20)) -> Int32 {
        if exitCode == nil { signal(SIGTERM) }
        if let code = wait(timeout: timeout) { return code }
        signal(SIGKILL)
        return wait(timeout: .seconds(10)) ?? -1
    }

    deinit {
        if exitCode == nil {
            signal(SIGKILL)
            _ = wait(timeout: .seconds(5))
        }
    }

    /// Runs a command to completion.
    public static func run(_ argv: [String], environment: [String]? = nil, timeout: Duration = .seconds(60)) throws -> CommandResult {
        let p = try TestProcess(argv, environment: environment)
        let code = p.wait(timeout: timeout) ?? p.stop(timeout: .seconds(1))
        return CommandResult(code: code, stdout: p.stdout, stderr: p.stderrLines.joined(separator: "\n"))
    }
}

/// A Mutex in a class, so closures on other threads can share it.
public final class Protected<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    /// Creates it holding `value`.
    public init(_ value: Value) { mutex = Mutex(value) }
    /// Runs `body` with exclusive access.
    public func withLock<R>(_ body: (inout sending Value) throws -> sending R) rethrows -> sending R {
        try mutex.withLock(body)
    }
}

/// A joinable pthread running a closure.
public final class Thread: @unchecked Sendable {
    // @unchecked: `handle` is written once in init before any other access.
    private var handle = pthread_t()
    private let joined = Protected(false)

    /// Starts `body` on a new thread.
    public init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let r = pthread_create(
            &handle, nil,
            { raw in
                let b = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                b.body()
                return nil
            }, box)
        precondition(r == 0, "pthread_create failed")
    }

    /// Waits for it to end (once; later calls return at once).
    public func join() {
        let first = joined.withLock { j in
            defer { j = true }
            return !j
        }
        if first { pthread_join(handle, nil) }
    }

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// Sleeps `seconds` without the cooperative pool: for waiting out a time span itself (a
/// timeout under test, a benchmark's window, a load client's pace), never for an event.
public func pause(_ seconds: Double) {
    pause(.seconds(seconds))
}

/// Sleeps `duration` (nothing when it is not positive) without the cooperative pool
/// (nanosleep, to the nanosecond: a load client's 2 ms pace often has less than a
/// millisecond left to wait).
public func pause(_ duration: Duration) {
    guard duration > .zero else { return }
    let (s, atto) = duration.components
    var ts = timespec(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
    _ = nanosleep(&ts, nil)
}
