import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension ThirdIntegration {
    /// baton's own descriptors 0-2 and what a CLI prints (a pid-1 and a logs audit).
    @Suite("standard streams")
    struct StandardStreamsTests {
        /// `sh -c SCRIPT` with `$0` the baton binary and `$1` a valid config.
        static func shell(_ script: String, config: String) throws -> CommandResult {
            try TestProcess.run(["/bin/sh", "-c", script, TestPaths.executable("baton"), config], timeout: .seconds(30))
        }

        @Test("a CLI whose stdout cannot be written exits 1 saying so; a reader gone is no error")
        func outputThatCannotBeWritten() throws {
            let directory = TestPaths.temporaryDirectory("std-out")
            defer { TestPaths.remove(directory) }
            let config = Integration.DirectoryTests.writeConfig(in: directory, controlSocket: directory + "/c.sock")
            let full = try Self.shell(#""$0" check-config "$1" > /dev/full"#, config: config)
            #expect(full.code == 1, "exit \(full.code): \(full.stderr)")
            #expect(full.stderr.hasPrefix("baton: could not write to stdout"), "\(full.stderr)")
            let gone = try Self.shell(#""$0" check-config "$1" | true"#, config: config)
            #expect(gone.code == 0 && gone.stderr.isEmpty, "exit \(gone.code): \(gone.stderr)")
            // Closed (a re-audit: exit 0, the output gone).
            let closed = try Self.shell(#""$0" check-config "$1" >&-"#, config: config)
            #expect(closed.code == 1 && closed.stderr.hasPrefix("baton: could not write to stdout: it was closed"), "exit \(closed.code): \(closed.stderr)")
        }

        /// A CI audit: `baton deploy … > /dev/full` waited for a deploy that succeeded, then
        /// exited 1 printing only `could not write to stdout`: the job could not tell its release
        /// was live. The outcome goes to stderr too when stdout failed.
        @Test("a deploy whose stdout cannot be written says its outcome on stderr")
        func deployOutcomeWhenStdoutFails() throws {
            let baton = try BatonHarness(workers: 1, tag: "std-dep")
            defer { baton.stop() }
            let r1 = baton.makeRelease("r1")
            let result = try TestProcess.run(
                ["/bin/sh", "-c", #""$0" deploy --socket "$1" --release "$2" > /dev/full"#, TestPaths.executable("baton"), baton.controlSocket, r1],
                timeout: .seconds(60))
            #expect(result.code == 1, "exit \(result.code): \(result.stderr)")
            #expect(result.stderr.contains("baton: deploy finished: 1 workers on \(r1)"), "\(result.stderr)")
            #expect(result.stderr.contains("baton: could not write to stdout"), "\(result.stderr)")
            #expect(try baton.status().release == r1)
        }

        /// A re-audit: with no /proc, Swift found no arguments, and `baton serve` printed the help
        /// and exited 0.
        @Test("without /proc, baton exits 2 saying so")
        func withoutProc() throws {
            let directory = TestPaths.temporaryDirectory("std-proc")
            defer { TestPaths.remove(directory) }
            let config = Integration.DirectoryTests.writeConfig(in: directory, controlSocket: directory + "/c.sock")
            let result = try TestProcess.run(
                [
                    "/usr/bin/unshare", "--mount", "--", "/bin/sh", "-c", #"umount -l /proc && exec "$0" serve --config "$1""#, TestPaths.executable("baton"),
                    config,
                ],
                timeout: .seconds(20))
            #expect(result.code == 2, "exit \(result.code): \(result.stderr)")
            #expect(result.stderr.contains("baton: /proc is not mounted"), "\(result.stderr)")
        }

        @Test("serve started with stdin and stdout closed has /dev/null there, not its own descriptors")
        func closedDescriptorsGetDevNull() throws {
            let baton = try BatonHarness(workers: 1, tag: "std-in", wrapper: ["/bin/sh", "-c", #"exec "$@" <&- >&-"#, "sh"])
            defer { baton.stop() }
            for fd in 0...1 {
                var target = [CChar](repeating: 0, count: 256)
                let n = readlink("/proc/\(baton.process.pid)/fd/\(fd)", &target, 255)
                let name = n > 0 ? String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "closed"
                #expect(name == "/dev/null", "fd \(fd): \(name)")
            }
            #expect(try baton.status().workers.count == 1)
        }
    }
}
