import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension MemoryIntegration {
    /// `baton-demo-worker --hold-shared PATH` (used by the sampling-cost benchmark).
    @Suite("demo worker --hold-shared")
    struct DemoWorkerHoldSharedTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }

        @Test("maps the whole file shared and touches it: resident in the worker")
        func holdsTheFile() throws {
            let fd = try CBatonLinuxShim.memoryFile(name: "hold-shared-test", bytes: [UInt8](repeating: 1, count: 8 << 20))
            defer { close(fd) }
            let process = try TestProcess([Self.worker, "--listen", "127.0.0.1:0", "--hold-shared", "/proc/self/fd/3"], passFDs: [fd])
            defer { process.stop() }
            #expect(process.waitForLine(containing: "ready", timeout: .seconds(10)) != nil, "\(process.stderrLines)")
            let memory = try #require(ProcFS.memory(of: process.pid, detailed: true))
            #expect(memory.rss >= 8 << 20, "\(memory)")
        }

        @Test("a file that cannot be mapped: one line on stderr, exit 2")
        func missingFile() throws {
            let result = try TestProcess.run([Self.worker, "--listen", "127.0.0.1:0", "--hold-shared", "/nonexistent/file"], timeout: .seconds(10))
            #expect(result.code == 2)
            #expect(result.stderr.contains("--hold-shared /nonexistent/file: "), "\(result.stderr)")
        }
    }
}
