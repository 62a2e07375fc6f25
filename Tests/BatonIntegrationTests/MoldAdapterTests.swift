import BatonTestSupport
import Glibc
import Testing

/// The repository's adapters/ folder.
let adaptersFolder = TestPaths.packageRoot + "/adapters"

extension MemoryIntegration {
    /// The mold adapters (docs/MOLD.md) against the conformance driver, as real
    /// processes: the driver plays baton's side (child subreaper, channel,
    /// notify sockets, output pipes) and checks every step of the protocol.
    @Suite("mold adapters (conformance driver)")
    struct MoldAdapterTests {
        static let driver = adaptersFolder + "/conformance/mold_conformance.py"
        static let apps = adaptersFolder + "/conformance/apps"
        static let pythonAdapterPath = adaptersFolder + "/python/baton_mold.py"

        /// Runs the driver against `mold` (argv, run in the apps folder); returns its
        /// exit code and its check lines, with the mold's and workers' output on failure, and
        /// the whole of that output (the driver echoes it on its stderr, prefixed).
        static func conform(_ mold: [String], refork: Bool, unix: Bool = false) throws -> (code: Int32, report: String, output: String) {
            let argv =
                ["python3", driver, "--directory", apps, "--timeout", "20"] + (refork ? ["--refork"] : []) + (unix ? ["--unix"] : []) + ["--"] + mold
            let process = try TestProcess(argv, environment: TestPaths.cleanEnvironment(adding: ["PYTHONPATH": apps]))
            // Every wait of the driver is bounded by --timeout; SIGTERM makes it kill and reap what it started.
            let code = process.wait(timeout: .seconds(300)) ?? process.stop(timeout: .seconds(30))
            // wait and stop join the output readers: stderrLines is the whole output here.
            let output = process.stderrLines
            return (code, process.stdout + "\n" + output.suffix(40).joined(separator: "\n"), output.joined(separator: "\n"))
        }

        @Test("Ruby/Rack (puma single mode): every check of docs/MOLD.md passes, refork included")
        func rubyAdapterConforms() throws {
            let result = try Self.conform(["ruby", adaptersFolder + "/ruby/baton-mold", "config.ru"], refork: true)
            #expect(result.code == 0, "\(result.report)")
            for check in [
                "mold ready", "w1 parent", "w1 intermediate reaped", "w1 ready", "w1 descriptors", "w1 LISTEN_PID", "w1 worker boot hook", "w1 process group",
                "copy-on-write sharing", "w2 watchdog", "w2 notify queue full", "w1 SIGTERM", "w3 promote", "w4 parent", "w4 forked from the warmed worker",
                "w4 LISTEN_PID", "w3 end of file",
                "mold end of file",
                "w2 outlives the mold", "mold SIGTERM",
            ] {
                #expect(result.report.contains("PASS \(check)"), "no PASS \(check):\n\(result.report)")
            }
        }

        @Test("Ruby/Rack with a TCP and a unix listener (LISTEN_FDS=2): workers serve on both, the refork channel above them")
        func rubyAdapterTwoListeners() throws {
            let result = try Self.conform(["ruby", adaptersFolder + "/ruby/baton-mold", "config.ru"], refork: true, unix: true)
            #expect(result.code == 0, "\(result.report)")
            for check in ["w1 serves on unix", "w2 serves on unix", "w3 promote", "w4 serves on unix", "mold end of file"] {
                #expect(result.report.contains("PASS \(check)"), "no PASS \(check):\n\(result.report)")
            }
        }

        @Test("Python/WSGI (waitress): every check of docs/MOLD.md passes, refork included")
        func pythonAdapterConforms() throws {
            let result = try Self.conform(["python3", Self.pythonAdapterPath, "conformance_app:application"], refork: true)
            #expect(result.code == 0, "\(result.report)")
            #expect(result.report.contains("conformance: all"), "\(result.report)")
            // The whole output: a traceback early in the run is out of the report's last lines.
            let tracebacks = result.output.split(separator: "\n").filter { $0.contains("Traceback") }
            #expect(tracebacks.isEmpty, "\(tracebacks.count) traceback(s) in the mold's and workers' output:\n\(result.output)")
        }

        /// A signal can trip Python's handler while the main thread is not in a call the signal
        /// interrupts: it lands on another thread (a waitress thread of the warm-up still exiting),
        /// or between the interpreter's last check and the blocking call. The mold waiting for
        /// spawn requests must still run the handler (SIGTERM: exit 0). Here the handler trips on
        /// a thread of the script's own once the main thread sleeps in serve_requests' wait; a
        /// mold blocked in recvmsg alone slept on (CI: "mold SIGTERM: pid … did not exit").
        @Test("the Python mold waiting for spawn requests exits 0 on a SIGTERM another thread took")
        func pythonMoldTakesSIGTERMFromAnyThread() throws {
            let script = """
                import os, platform, signal, socket, sys, threading, time
                sys.path.insert(0, os.path.dirname(sys.argv[1]))
                import baton_mold
                baton_mold.exit_zero_on_sigterm()
                channel, baton_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                main = threading.get_native_id()
                futex = {"x86_64": 202, "aarch64": 98}[platform.machine()]
                def trip():
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        with open("/proc/self/task/%d/stat" % main) as f:
                            state = f.read().rsplit(")", 1)[1].split()[0]
                        with open("/proc/self/task/%d/syscall" % main) as f:
                            call = f.read().split()[0]
                        if state == "S" and call not in ("running", str(futex)):
                            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
                            return
                        time.sleep(0.01)
                    os._exit(3)
                threading.Thread(target=trip, daemon=True).start()
                baton_mold.serve_requests(None, channel)
                os._exit(4)
                """
            let process = try TestProcess(["python3", "-c", script, Self.pythonAdapterPath])
            // Stopping it sends a SIGTERM of its own, which would end the wait: only an exit within the bound counts.
            let code = process.wait(timeout: .seconds(10))
            if code == nil { _ = process.stop(timeout: .seconds(5)) }
            #expect(code == 0, "exit \(code.map(String.init) ?? "none within 10 s"): \(process.stderrLines.joined(separator: "\n"))")
        }

        @Test("the driver fails a mold that never sends READY=1, naming the check, and leaves no process behind")
        func driverCatchesNeverReady() throws {
            // A "mold" that loads nothing and never notifies: the driver must fail at its first check.
            let result = try TestProcess.run(
                ["python3", Self.driver, "--directory", Self.apps, "--timeout", "2", "--", "sleep", "60"], timeout: .seconds(60))
            #expect(result.code == 1, "\(result.stdout)\n\(result.stderr)")
            let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("FAIL mold ready") }, "\(result.stdout)")
            // "... no READY=1 from pid N within ...": that sleep was killed and reaped.
            let pid = try #require(line.firstRange(of: "pid ").map { Int32(line[$0.upperBound...].prefix { $0.isNumber }) } ?? nil)
            let cmdline = (try? TestProcess.run(["cat", "/proc/\(pid)/cmdline"], timeout: .seconds(10)).stdout) ?? ""
            #expect(!cmdline.hasPrefix("sleep"), "the mold \(pid) is still there")
        }

        @Test("bad use of the driver and of the Ruby adapter: one line, exit 2")
        func badUse() throws {
            let noCommand = try TestProcess.run(["python3", Self.driver], timeout: .seconds(30))
            #expect(noCommand.code == 2, "\(noCommand.stderr)")
            let noDirectory = try TestProcess.run(["python3", Self.driver, "--directory", "/nonexistent/x", "--", "true"], timeout: .seconds(30))
            #expect(noDirectory.code == 2 && noDirectory.stderr.contains("no such directory"), "\(noDirectory.stderr)")
            let noChannel = try TestProcess.run(["ruby", adaptersFolder + "/ruby/baton-mold", "config.ru"], timeout: .seconds(30))
            #expect(noChannel.code == 2, "\(noChannel.stderr)")
            #expect(noChannel.stderr.split(separator: "\n").count == 1 && noChannel.stderr.contains("BATON_MOLD_FD is not set"), "\(noChannel.stderr)")
            let noFile = try TestProcess.run(["ruby", adaptersFolder + "/ruby/baton-mold"], timeout: .seconds(30))
            #expect(noFile.code == 2 && noFile.stderr.contains("usage: baton-mold"), "\(noFile.stderr)")
        }
    }
}
