import BatonCore
import BatonSystem
import BatonTestSupport
import CBatonLinux
import FoundationEssentials
import Glibc
import Testing

extension ThirdIntegration {
    /// Workers that print without pause and a stderr nobody reads never stall
    /// baton's event loop: `baton status` answers and SIGTERM stops it.
    @Suite("bounded I/O")
    struct BoundedIOTests {
        /// `yes` prints this line as fast as the pipe takes it.
        static let flood = ["/usr/bin/yes", String(repeating: "flood ", count: 20)]

        @Test("stderr on a pipe nobody reads and workers flooding output: status answers, drops are counted, SIGTERM stops baton and its workers")
        func stuckStderr() throws {
            var fds: [Int32] = [-1, -1]
            try #require(CBatonLinux_pipe_cloexec(&fds) == 0)
            // The smallest pipe (one page; F_SETPIPE_SZ = 1031): it is full after a few lines.
            _ = fcntl(fds[1], 1031, 4096)
            defer { close(fds[0]) }
            let daemon = try QuietDaemon(
                command: Self.flood, workers: 2, stderr: fds[1],
                sections: "[readiness]\nmode = \"delay\"\ndelay = \"0s\"\n[stop]\ntimeout = \"5s\"\n[metrics]\naddress = \"127.0.0.1:0\"")
            close(fds[1])
            defer { daemon.cleanUp() }

            let ready = try daemon.waitUntilReady(workers: 2, timeout: .seconds(60))
            try #require(ready != nil, "baton status never answered with 2 ready workers")
            let human = try daemon.cli(["status"])
            #expect(human.code == 0, "\(human.stderr)")

            // The first page of the log (read once, then never again) names the metrics port.
            _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
            var head = [UInt8](repeating: 0, count: 4096)
            let n = head.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            let text = String(decoding: head[0..<max(n, 0)], as: UTF8.self)
            let port = text.range(of: "metrics on 127.0.0.1:").flatMap { UInt16(text[$0.upperBound...].prefix { $0.isNumber }) }
            try #require(port != nil, "no metrics line in the first page of the log: \(text)")

            // The log cannot keep up: what did not fit is dropped and counted. The page read
            // above made room again, so wait (bounded) until the flood has filled it once more.
            var report: StatusReport?
            for _ in 0..<100 {
                let later = try daemon.cli(["status", "--json"])
                #expect(later.code == 0, "\(later.stderr)")
                report = try JSONDecoder().decode(StatusReport.self, from: Data(later.stdout.utf8))
                if (report?.logDroppedBytes ?? 0) > 0 { break }
                usleep(100_000)
            }
            #expect((report?.logDroppedBytes ?? 0) > 0)
            let dropped = try daemon.cli(["status"])
            #expect(dropped.stdout.contains("bytes of baton's log dropped"), "\(dropped.stdout)")
            let metrics = HTTP.get(port: port!, path: "/metrics")
            let counter = metrics?.body.split(separator: "\n").first { $0.hasPrefix("baton_log_dropped_bytes_total ") }
            #expect(counter.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 > 0 } == true, "\(metrics?.body ?? "no scrape")")

            #expect(daemon.terminate(timeout: .seconds(30)) == 0, "SIGTERM did not stop baton")
            for worker in ready!.report.workers {
                #expect(QuietDaemon.isGone(worker.pid, timeout: .seconds(10)), "worker \(worker.pid) outlived baton")
            }
        }

        @Test("workers flooding output: baton status answers within the client's normal timeout, SIGTERM stops baton")
        func floodingWorkers() throws {
            let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
            let daemon = try QuietDaemon(command: Self.flood, workers: 3, stderr: null)
            close(null)
            defer { daemon.cleanUp() }
            let ready = try daemon.waitUntilReady(workers: 3, timeout: .seconds(60))
            try #require(ready != nil, "baton status never answered with 3 ready workers")
            for _ in 0..<3 {
                let status = try daemon.cli(["status"])
                #expect(status.code == 0, "\(status.stderr)")
            }
            #expect(daemon.terminate(timeout: .seconds(30)) == 0, "SIGTERM did not stop baton")
            for worker in ready!.report.workers {
                #expect(QuietDaemon.isGone(worker.pid, timeout: .seconds(10)), "worker \(worker.pid) outlived baton")
            }
        }
    }
}
