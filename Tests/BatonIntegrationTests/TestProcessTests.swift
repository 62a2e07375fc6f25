import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// The test harness's own child process: what `waitForLine` may conclude after an exit.
    @Suite("test process")
    struct TestProcessTests {
        /// The exit was seen before the reader thread had read the last lines, and
        /// `waitForLine` gave up at once: `ProcessTreeTests` then missed baton's last
        /// "worker exited" line in a CI run. Here the last line comes from a child that writes
        /// after its parent exited (it holds the pipe), so the exit is always seen first.
        @Test("waitForLine after the exit still finds a line written just before the pipe closed")
        func lineAfterExit() throws {
            let process = try TestProcess(["/bin/sh", "-c", "(sleep 0.3; echo late >&2) & exit 0"])
            // `wait` would join the reader threads; only the exit is awaited here.
            #expect(process.waitForExit(timeout: .seconds(10)) == 0)
            #expect(process.stderrLines.isEmpty, "the line comes after the exit")
            #expect(process.waitForLine(containing: "late", timeout: .seconds(10)) == "late")
            process.wait(timeout: .seconds(10))
        }

        /// The same for stdout: `waitForStdout` answered from what the reader had read when the
        /// exit was seen.
        @Test("waitForStdout after the exit still finds text written just before the pipe closed")
        func stdoutAfterExit() throws {
            let process = try TestProcess(["/bin/sh", "-c", "(sleep 0.3; echo late) & exit 0"])
            #expect(process.waitForExit(timeout: .seconds(10)) == 0)
            #expect(process.stdout.isEmpty, "the text comes after the exit")
            #expect(process.waitForStdout(containing: "late", timeout: .seconds(10)))
            process.wait(timeout: .seconds(10))
        }
    }
}
