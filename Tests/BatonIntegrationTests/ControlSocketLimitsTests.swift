import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension SecondIntegration {
    /// The control socket's slots always come back: silent clients time out,
    /// half-closed clients get their reply (or are dropped when they stop
    /// reading), and a client over the limit is told why.
    @Suite("control socket limits")
    struct ControlSocketLimitsTests {
        /// Cheap workers: `sleep`, ready at once.
        static let sleeper = ["/usr/bin/sleep", "100000"]

        /// A connected client of `path` whose reads time out after `timeout`; -1 if it failed.
        static func connect(_ path: String, timeout: Int = 30) -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return -1 }
            guard Sockets.connectUnix(fd, path) == 0 else {
                close(fd)
                return -1
            }
            var tv = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }

        /// Everything the daemon sends until it closes (nil if a read timed out first).
        static func readToEnd(_ fd: Int32) -> [UInt8]? {
            var all: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { return nil }
                if n == 0 { return all }
                all += buffer[0..<n]
            }
        }

        /// A daemon of one `sleep` worker, quiet, ready, with `control` in its `[control]`.
        static func oneSleeper(control: String) throws -> QuietDaemon {
            let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
            let daemon = try QuietDaemon(command: sleeper, workers: 1, stderr: null, control: control)
            close(null)
            guard try daemon.waitUntilReady(workers: 1, timeout: .seconds(60)) != nil else {
                daemon.cleanUp()
                throw DaemonNotReady()
            }
            return daemon
        }

        struct DaemonNotReady: Error {}

        /// Sends `{"cmd":"status"}` and shuts the writing half.
        static func requestStatusAndHalfClose(_ fd: Int32) {
            let line = ControlProtocol.encodeLine(ControlRequest(cmd: "status"))
            _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            shutdown(fd, Int32(SHUT_WR))
        }

        @Test("silent connections are closed after the idle timeout; the client over the limit is told why and the CLI exits 3")
        func silentConnections() throws {
            let daemon = try Self.oneSleeper(control: "idle_timeout = \"4s\"")
            defer { daemon.cleanUp() }

            // Every slot taken by a client that never sends a request: 64, and the 8 more held
            // back for root (this test runs as root).
            var silent: [Int32] = []
            defer { silent.forEach { close($0) } }
            for _ in 0..<72 {
                let fd = Self.connect(daemon.controlSocket)
                try #require(fd >= 0)
                silent.append(fd)
            }
            let extra = Self.connect(daemon.controlSocket)
            try #require(extra >= 0)
            let refusal = Self.readToEnd(extra).map { String(decoding: $0, as: UTF8.self) }
            close(extra)
            #expect(refusal?.contains("too many control connections") == true, "\(refusal ?? "read timed out")")
            let refused = try daemon.cli(["status"])
            #expect(refused.code == 3)
            #expect(refused.stderr.contains("too many control connections"), "\(refused.stderr)")

            // The daemon closes each silent client itself, with a one-line reason.
            for fd in silent {
                // Each read waits up to 30 s; the first that times out ends the test.
                let bytes = try #require(Self.readToEnd(fd), "a silent connection was never closed")
                #expect(String(decoding: bytes, as: UTF8.self).contains("no request within"))
            }
            let status = try daemon.cli(["status"])
            #expect(status.code == 0, "\(status.stderr)")
        }

        @Test("half-closed clients with a reply larger than the socket buffer: it finishes, or the connection is dropped when they stop reading")
        func halfClosedClients() throws {
            // Every worker's release is a ~3.8 KB path: the status reply of 80 workers is ~330 KB,
            // more than a unix socket's send buffer (212992 bytes by default).
            let root = TestPaths.temporaryDirectory("hc")
            defer { TestPaths.remove(root) }
            var release = root
            for level in 0..<15 {
                release += "/" + String(repeating: Character(String(level % 10)), count: 250)
                try #require(mkdir(release, 0o755) == 0)
            }
            let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
            let daemon = try QuietDaemon(
                command: Self.sleeper, workers: 80, stderr: null, directory: release, extraApp: "start_concurrency = 16",
                control: "idle_timeout = \"1s\"")
            close(null)
            defer { daemon.cleanUp() }
            let ready = try daemon.waitUntilReady(workers: 80, timeout: .seconds(120))
            try #require(ready != nil)
            try #require(ready!.json.utf8.count > 300_000)

            // A client that half-closes and keeps reading gets the whole reply.
            for _ in 0..<5 {
                let fd = Self.connect(daemon.controlSocket, timeout: 20)
                try #require(fd >= 0)
                Self.requestStatusAndHalfClose(fd)
                let reply = Self.readToEnd(fd)
                close(fd)
                try #require(reply != nil, "the reply stalled after the half-close")
                #expect(reply!.count > 250_000 && reply!.last == 0x0A && String(decoding: reply!.prefix(200), as: UTF8.self).contains("\"ok\":true"))
            }

            // 80 that half-close and never read: the daemon drops them after the write timeout.
            var stalled: [Int32] = []
            defer { stalled.forEach { close($0) } }
            for _ in 0..<80 {
                let fd = Self.connect(daemon.controlSocket)
                try #require(fd >= 0)
                Self.requestStatusAndHalfClose(fd)
                stalled.append(fd)
            }
            let deadline = monotonicNow() + .seconds(60)
            var last = CommandResult(code: -1, stdout: "", stderr: "")
            while monotonicNow() < deadline {
                last = try daemon.cli(["status"])
                if last.code == 0 { break }
                pause(0.5)
            }
            #expect(last.code == 0, "baton status still refused: \(last.stderr)")
        }

        /// An audit of resource exhaustion: baton kept the soft RLIMIT_NOFILE it was started
        /// with (each worker and client costs it descriptors; systemd's default soft limit is
        /// 1,024). `baton serve` raises its soft limit to the hard one, and its workers get the
        /// one baton was started with (a program using select(2) breaks above 1,023).
        @Test("baton raises its descriptor soft limit to the hard one; its workers keep the one it was started with")
        func descriptorLimits() throws {
            let baton = try BatonHarness(workers: 1, tag: "nofile", wrapper: ["/bin/sh", "-c", "ulimit -Sn 256 && exec \"$@\"", "sh"])
            defer { baton.stop() }
            /// /proc/PID/limits' "Max open files" line: field 3 is the soft limit, 4 the hard one.
            func openFilesLimit(_ pid: Int32, field: Int) -> String? {
                ProcFS.read("/proc/\(pid)/limits")?.split(separator: "\n").first { $0.hasPrefix("Max open files") }
                    .map { String($0.split(separator: " ", omittingEmptySubsequences: true)[field]) }
            }
            func softLimit(_ pid: Int32) -> String? { openFilesLimit(pid, field: 3) }
            let worker = try #require(try baton.status().workers.first?.pid)
            #expect(softLimit(worker) == "256")
            let hard = try #require(openFilesLimit(baton.process.pid, field: 4))
            #expect(softLimit(baton.process.pid) == hard, "baton's soft limit is its hard one")
            // After `baton upgrade` (an execve at the raised limit), new workers still get the
            // limit the first image was started with.
            let upgraded = try baton.cli(["upgrade"])
            #expect(upgraded.code == 0, "\(upgraded.stderr)")
            let reloaded = try baton.cli(["reload"])
            #expect(reloaded.code == 0, "\(reloaded.stderr)")
            let fresh = try #require(try baton.status().workers.first?.pid)
            #expect(fresh != worker)
            #expect(softLimit(fresh) == "256")
            #expect(softLimit(baton.process.pid) == hard)
        }

        /// A sockets audit: a read_group member holding the 64 connections (each one reopened
        /// as the idle timeout closed it) locked root and the control group out: 25 of 25
        /// `baton status` exit 3, "too many control connections". One uid other than root and
        /// baton's has 16 at most, and root 8 more than everyone.
        @Test("one user holds 16 control connections at most; root still gets in")
        func oneUserCannotTakeEverySlot() throws {
            let daemon = try Self.oneSleeper(control: "read_group = \"60\"\nidle_timeout = \"30s\"")
            defer { daemon.cleanUp() }
            chmod(daemon.directory, 0o755)
            // A read_group member (gid 60) opens 20 and holds them: the server's refusal comes at
            // once, an accepted one says nothing (it waits for a request).
            let script = """
                import socket, sys, time
                held, refused = [], 0
                for _ in range(20):
                    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(0.5)
                    try:
                        data = s.recv(4096)
                        refused += b"too many control connections of uid 65534 (16 open)" in data
                    except socket.timeout:
                        held.append(s)
                print(f"held={len(held)} refused={refused}", flush=True)
                time.sleep(60)
                """
            let holder = try TestProcess(
                ["/usr/bin/python3", "-c", script, daemon.controlSocket], environment: TestPaths.cleanEnvironment(),
                credentials: Credentials(uid: 65534, gid: 65534, groups: [65534, 60]))
            defer { _ = holder.stop(timeout: .seconds(5)) }
            #expect(holder.waitForStdout(containing: "\n", timeout: .seconds(30)), "\(holder.stderrLines)")
            #expect(holder.stdout == "held=16 refused=4\n", "\(holder.stdout) \(holder.stderrLines)")
            let status = try daemon.cli(["status"])
            #expect(status.code == 0, "root is not locked out: \(status.stderr)")
        }
    }
}
