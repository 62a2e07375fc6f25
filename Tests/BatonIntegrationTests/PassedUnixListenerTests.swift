import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension SecondIntegration {
    /// A unix listener passed in with no file at its path: a socket unit's, or one kept in
    /// systemd's FD store, whose file was removed while baton was stopped.
    @Suite("passed unix listeners")
    struct PassedUnixListenerTests {
        /// `[app]` with a demo worker, `[listen]` on `path`, the control socket in `directory`.
        static func config(in directory: String, listening path: String) -> String {
            """
            [app]
            name = "shop"
            command = ["\(TestPaths.executable("baton-demo-worker"))"]
            directory = "/tmp"
            workers = 1
            state_directory = "\(directory)/state"
            runtime_directory = "\(directory)/run"
            [listen]
            addresses = ["unix:\(path)"]
            [readiness]
            mode = "notify"
            [control]
            socket = "\(directory)/control.sock"

            """
        }

        /// Left from a listeners audit: the file of a socket unit's unix listener removed, then
        /// `systemctl restart` of the service alone: `1/1 workers ready`, no problem, every
        /// connect refused. And the socket of systemd's FD store, its file removed while baton
        /// was stopped, was served again with no name a client could reach.
        @Test("a socket unit's unix listener whose file was removed or replaced is a problem in status; the FD store's is bound again")
        func passedWithoutItsFile() throws {
            let directory = TestPaths.temporaryDirectory("passed-unix")
            defer { TestPaths.remove(directory) }
            let path = directory + "/web.sock"
            let configPath = directory + "/shop.toml"
            TestPaths.write(configPath, Self.config(in: directory, listening: path))
            let storedName = Sockets.fdName(for: .unix(path: path))
            // Its file removed; or removed and another socket bound at the path, not listening (a
            // re-audit: taken for the listener's own, status said all was well).
            // The FD store's, when another process listens at the path, serves on (a re-audit: its
            // bind failed, `Address already in use`, exit 1).
            for (name, replaced, listening) in [
                ("web", false, false), (storedName, false, false), ("web", true, false), (storedName, true, false), (storedName, true, true),
            ] {
                let listener = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 16)
                #expect(unlink(path) == 0)
                var other: Int32 = -1
                if replaced {
                    other = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
                    var address = sockaddr_un()
                    address.sun_family = sa_family_t(AF_UNIX)
                    withUnsafeMutableBytes(of: &address.sun_path) { raw in _ = path.utf8CString.withUnsafeBytes { raw.copyMemory(from: $0) } }
                    let bound = withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(other, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                    }
                    #expect(bound == 0)
                    if listening { #expect(listen(other, 4) == 0) }
                }
                defer { if other >= 0 { close(other) } }
                let serve = try TestProcess(
                    [TestPaths.executable("baton"), "serve", "--config", configPath],
                    environment: TestPaths.cleanEnvironment() + ["LISTEN_FDS=1", "LISTEN_FDNAMES=\(name)"], passFDs: [listener.fd], setListenPID: true)
                defer { _ = serve.stop() }
                #expect(serve.waitForLine(containing: "all 1 workers ready", timeout: .seconds(30)) != nil, "\(name): \(serve.stderrLines)")
                let status = try TestProcess.run([TestPaths.executable("baton"), "status", "--socket", directory + "/control.sock"])
                let what = replaced ? "is another file now (something bound or put there since)" : "was removed"
                if listening {
                    #expect(
                        status.stdout.contains("listening socket unix:\(path): its file \(what): no client can connect to it; restart baton"),
                        "\(status.stdout)")
                    #expect(!serve.stderrLines.contains { $0.contains("bound again") }, "\(serve.stderrLines)")
                } else if name == "web" {
                    #expect(
                        status.stdout.contains(
                            "listening socket unix:\(path): its file \(what): no client can connect to it; restart the socket unit and baton"),
                        "\(status.stdout)")
                } else {
                    #expect(!status.stdout.contains("listening socket unix:"), "\(status.stdout)")
                    #expect(
                        serve.stderrLines.contains { $0.contains("is not the file at \(path) any more (removed or replaced): bound again") },
                        "\(serve.stderrLines)")
                    #expect(Sockets.unixSocketAnswers(path), "nothing listens at \(path)")
                }
                #expect(serve.stop() == 0)
                _ = unlink(path)
            }
        }
    }
}
