import BatonSystem
import Glibc
import Testing

/// `ChildProcess` owns the pidfd of a child it was given: open while held, closed exactly once,
/// by `close()` or when the last reference goes, on a real process.
@Suite struct ChildProcessTests {
    /// Whether `fd` is, in this process, a pidfd naming `pid` (another test may have been given
    /// the same number since it was closed, but not for this pid, which only the test knows).
    private func isPidfd(_ fd: Int32, of pid: pid_t) -> Bool {
        guard fd >= 0, let info = ProcFS.read("/proc/self/fdinfo/\(fd)") else { return false }
        return info.split(separator: "\n").contains { $0.split(whereSeparator: \.isWhitespace) == ["Pid:", Substring(String(pid))] }
    }

    /// Starts a child that waits on a pipe (it cannot exit, so its pid is not reused while the
    /// test runs); returns it and the pipe's write end, for `end(_:gate:)`.
    private func waitingChild() throws -> (ChildProcess, Int32) {
        let gate = try makeBlockingPipe()
        defer { close(gate.read) }
        let child = try LinuxProcessLauncher().spawn(
            SpawnRequest(argv: ["/bin/sh", "-c", "read line <&3"], environment: childEnvironment, passFDs: [gate.read]))
        return (child, gate.write)
    }

    /// Lets the child exit and reaps it by pid (its pidfd is closed by then).
    private func end(_ pid: pid_t, gate: Int32) {
        close(gate)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    @Test func closeClosesThePidfdOnceAndLeavesNoNumber() throws {
        let (child, gate) = try waitingChild()
        defer { end(child.pid, gate: gate) }
        let raw = child.pidfd
        #expect(isPidfd(raw, of: child.pid))
        child.close()
        #expect(child.pidfd == -1)
        #expect(!isPidfd(raw, of: child.pid), "closed by close()")
        child.close()  // a second close does nothing
        #expect(child.pidfd == -1)
    }

    @Test func droppingTheLastReferenceClosesThePidfd() throws {
        var (child, gate): (ChildProcess?, Int32) = try waitingChild()
        let raw = child?.pidfd ?? -1
        let pid = child?.pid ?? 0
        defer { end(pid, gate: gate) }
        #expect(isPidfd(raw, of: pid))
        child = nil
        #expect(!isPidfd(raw, of: pid), "closed when the owner went")
    }
}
