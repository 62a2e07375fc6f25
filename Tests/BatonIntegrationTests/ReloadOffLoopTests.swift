import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// `reload` reads and parses the config (in a child process) off the event loop: a slow
    /// read or parse holds the reload, not the daemon.
    @Suite("reload off the loop")
    struct ReloadOffLoopTests {
        @Test("a reload reading a config FIFO nobody has written yet: status answers meanwhile; the reload finishes once the text comes")
        func statusAnswersDuringSlowReload() throws {
            let baton = try BatonHarness(workers: 1, tag: "rlfifo")
            defer { baton.stop() }
            let good = try #require(ProcFS.read(baton.configPath))
            unlink(baton.configPath)
            try #require(mkfifo(baton.configPath, 0o600) == 0)
            defer {
                unlink(baton.configPath)
                TestPaths.write(baton.configPath, good)
            }
            let reload = try baton.startCLI(["reload"])
            defer { _ = reload.stop(timeout: .seconds(5)) }

            // baton has the FIFO open for reading once a non-blocking open for writing succeeds.
            var writer: Int32 = -1
            for _ in 0..<1500 where writer < 0 {
                writer = open(baton.configPath, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if writer < 0 {
                    var none = pollfd(fd: -1, events: 0, revents: 0)
                    _ = poll(&none, 0, 20)
                }
            }
            try #require(writer >= 0, "baton never opened the config FIFO")
            // The reload now waits for the text; the daemon must not.
            let status = try baton.cli(["status", "--json"], timeout: .seconds(10))
            #expect(status.code == 0, "status did not answer while the reload read its config: \(status.stderr)")

            _ = fcntl(writer, F_SETFL, 0)
            writeAll(writer, Array(good.utf8))
            close(writer)
            #expect(reload.wait(timeout: .seconds(60)) == 0, "\(reload.stderrLines)")
            #expect(try baton.status().workers.count == 1)
        }
    }
}
