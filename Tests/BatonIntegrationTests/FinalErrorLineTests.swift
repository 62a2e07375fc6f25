import BatonCore
import BatonSystem
import BatonTestSupport
import CBatonLinux
import Glibc
import Testing

extension Integration {
    /// baton's last words (`baton: <error>` before a non-zero exit) never keep it
    /// from exiting: a stderr pipe that is full and never read gets them if it
    /// can take them within the exit's bounded flush, else they are lost.
    @Suite("final error line")
    struct FinalErrorLineTests {
        @Test("stderr a full pipe nobody reads: baton still exits 2 after a config error")
        func fullStderrPipe() throws {
            var fds: [Int32] = [-1, -1]
            try #require(CBatonLinux_pipe_cloexec(&fds) == 0)
            defer { close(fds[0]) }
            // Filled through a second, non-blocking open file description: baton's own
            // stays blocking, as a pipe from a shell or a supervisor would be.
            let filler = open("/proc/self/fd/\(fds[1])", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            try #require(filler >= 0)
            let page = [UInt8](repeating: 0x2E, count: 4096)
            while page.withUnsafeBytes({ write(filler, $0.baseAddress, $0.count) }) > 0 {}
            close(filler)
            let request = SpawnRequest(
                argv: [TestPaths.executable("baton"), "check-config", "/nonexistent/baton.toml"],
                environment: TestPaths.cleanEnvironment(), stderr: fds[1])
            let child = try LinuxProcessLauncher().spawn(request)
            close(fds[1])
            defer { child.close() }
            var pfd = pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0)
            let exited = poll(&pfd, 1, 20_000) == 1
            if !exited { CBatonLinuxShim.signal(pidfd: child.pidfd, SIGKILL) }
            #expect(exited, "baton blocked writing its error line to a full stderr")
            while !CBatonLinuxShim.hasExited(pidfd: child.pidfd) { _ = poll(&pfd, 1, 1000) }
            #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true) == (exited ? .exited(2) : .signaled(SIGKILL)))
        }
    }
}
