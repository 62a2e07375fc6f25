import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension SecondIntegration {
    /// The Python mold adapter's drain (adapters/python/baton_mold.py, waitress) with
    /// requests in flight at SIGTERM: a real baton, a real forked worker, real sockets.
    @Suite("mold mode: Python worker drain", .serialized)
    struct MoldDrainTests {
        /// `/slow` records its start in `started` (one line per request, in the release
        /// folder) and answers a second later, so the test knows the requests are in the
        /// worker's threads before it sends SIGTERM. `/big` writes 64 MiB once the test closed its
        /// connection (`closed`), and records in `big-finished` that its body was closed.
        static let app = """
            import os, time

            def big(start_response):
                # The test closes its connection once this started, and says so with `closed`;
                # the body is then written to a connection the client has closed.
                with open("big-started", "a") as f:
                    f.write("%d\\n" % os.getpid())
                deadline = time.monotonic() + 20
                while not os.path.exists("closed") and time.monotonic() < deadline:
                    time.sleep(0.01)
                start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(64 << 20))])

                def body():
                    try:
                        for _ in range(1024):
                            yield b"x" * 65536
                    finally:
                        with open("big-finished", "a") as f:
                            f.write("%d\\n" % os.getpid())

                return body()

            def application(environ, start_response):
                if environ.get("PATH_INFO") == "/big":
                    return big(start_response)
                if environ.get("PATH_INFO") == "/slow":
                    with open("started", "a") as f:
                        f.write("%d\\n" % os.getpid())
                    time.sleep(1.0)
                body = ("hello pid=%d\\n" % os.getpid()).encode()
                start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
                return [body]
            """

        static func start(tag: String) throws -> BatonHarness {
            let check = try TestProcess.run(["/usr/bin/env", "python3", "-c", "import waitress"], timeout: .seconds(30))
            guard check.code == 0 else { throw HarnessError("python3 has no waitress: run scripts/install-deps (\(check.stderr))") }
            return try BatonHarness(
                workers: 1, command: ["python3", pythonMoldAdapter, "drainapp:application"], extraApp: "mode = \"mold\"",
                sections: BatonHarness.defaultSections + "\n[mold]\nstart_timeout = \"20s\"", tag: tag,
                beforeStart: { TestPaths.write($0 + "/releases/r1/drainapp.py", app) })
        }

        /// Opens `count` keep-alive connections, each with a `/slow` request in the worker's
        /// threads (its `started` file says so), then SIGTERMs the worker; returns the
        /// responses and baton's output after the worker exited and its output was read.
        static func drainWithRequestsInFlight(_ baton: BatonHarness, count: Int) throws -> (responses: [HTTP.Response?], log: [String]) {
            let worker = try #require(try baton.status().workers.first?.pid)
            let pidfd = ProcessWatch.open(worker)
            defer { close(pidfd) }
            try #require(pidfd >= 0)
            let connections = (0..<count).compactMap { _ in HTTP.connect(port: baton.port) }
            defer { connections.forEach { close($0) } }
            try #require(connections.count == count)
            // Keep-alive requests (HTTP/1.1, no Connection header): the drain must say when it closes.
            for fd in connections { HTTP.send(fd, "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") }
            let started = baton.releaseDirectory + "/started"
            let deadline = monotonicNow() + .seconds(20)
            while (ProcFS.read(started)?.split(separator: "\n").count ?? 0) < count, monotonicNow() < deadline { usleep(20_000) }
            try #require((ProcFS.read(started)?.split(separator: "\n").count ?? 0) == count, "the requests reached the worker")
            #expect(kill(worker, SIGTERM) == 0)
            let responses = connections.map { HTTP.readResponse($0) }
            #expect(ProcessWatch.waitExit(pidfd, timeout: .seconds(20)), "the worker exits after its drain")
            // baton logs the exit once it read the worker's pipe to its end: every line it printed is in.
            #expect(baton.process.waitForLine(timeout: .seconds(20)) { $0.contains("\(worker)") && $0.contains("exited") } != nil)
            return (responses, baton.process.stderrLines)
        }

        @Test("SIGTERM with requests in flight: every one is answered, and the worker prints no traceback (waitress's trigger stays open)")
        func drainPrintsNoTraceback() throws {
            let baton = try Self.start(tag: "molddrain1")
            defer { baton.stop() }
            let (responses, log) = try Self.drainWithRequestsInFlight(baton, count: 3)
            for response in responses { #expect(response?.status == 200, "\(String(describing: response))") }
            let traceback = log.filter { $0.contains("Traceback") || $0.contains("Exception when servicing") || $0.contains("Bad file descriptor") }
            #expect(traceback.isEmpty, "\(log.suffix(40).joined(separator: "\n"))")
        }

        @Test("more requests than threads: no waitress 'Task queue depth' line per queued request (under load each went through baton's log)")
        func queuedRequestsAreNotLogged() throws {
            let baton = try Self.start(tag: "molddrain4")
            defer { baton.stop() }
            // 6 requests on 4 threads (WAITRESS_THREADS' default): 2 wait in waitress's queue.
            let (responses, log) = try Self.drainWithRequestsInFlight(baton, count: 6)
            for response in responses { #expect(response?.status == 200) }
            #expect(!log.contains { $0.contains("Task queue depth") }, "\(log.suffix(20).joined(separator: "\n"))")
        }

        @Test("a client that closes its connection before its response is written does not kill the worker (SIGPIPE stays ignored, as in python3)")
        func closedClientDoesNotKillTheWorker() throws {
            let baton = try Self.start(tag: "molddrain3")
            defer { baton.stop() }
            let worker = try #require(try baton.status().workers.first?.pid)
            let pidfd = ProcessWatch.open(worker)
            defer { close(pidfd) }
            try #require(pidfd >= 0)
            let fd = try #require(HTTP.connect(port: baton.port))
            HTTP.send(fd, "GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            let release = baton.releaseDirectory
            let deadline = monotonicNow() + .seconds(20)
            while ProcFS.read(release + "/big-started") == nil, monotonicNow() < deadline { usleep(20_000) }
            try #require(ProcFS.read(release + "/big-started") != nil, "the request reached the worker")
            close(fd)
            TestPaths.write(release + "/closed", "")
            // The body's iterator is closed when the write fails (the worker lives) or never (it died).
            let end = monotonicNow() + .seconds(20)
            while ProcFS.read(release + "/big-finished") == nil, !ProcessWatch.waitExit(pidfd, timeout: .milliseconds(20)), monotonicNow() < end {}
            #expect(ProcFS.read(release + "/big-finished") != nil, "the app saw the client go away")
            #expect(!ProcessWatch.waitExit(pidfd, timeout: .zero), "\(baton.process.stderrLines.suffix(10).joined(separator: "\n"))")
            #expect(!baton.process.stderrLines.contains { $0.contains("signal 13") })
            let response = try #require(HTTP.get(port: baton.port, path: "/"))
            #expect(Self.field(response.body, "pid") == String(worker), "the same worker answers")
        }

        /// `name=value` from a response body.
        static func field(_ body: String, _ name: String) -> String? {
            body.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }

        @Test("a keep-alive response sent during the drain says Connection: close, so the client never reuses a connection the worker is closing")
        func drainAnswersConnectionClose() throws {
            let baton = try Self.start(tag: "molddrain2")
            defer { baton.stop() }
            let (responses, _) = try Self.drainWithRequestsInFlight(baton, count: 2)
            for response in responses {
                #expect(response?.status == 200)
                #expect(response?.header("connection")?.lowercased() == "close", "\(String(describing: response?.headers))")
            }
        }
    }
}
