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
        @Test("a socket unit's unix listener with no file is a problem in status; the FD store's is bound again")
        func passedWithoutItsFile() throws {
            let directory = TestPaths.temporaryDirectory("passed-unix")
            defer { TestPaths.remove(directory) }
            let path = directory + "/web.sock"
            let configPath = directory + "/shop.toml"
            TestPaths.write(configPath, Self.config(in: directory, listening: path))
            let storedName = Sockets.fdName(for: .unix(path: path))
            for name in ["web", storedName] {
                let listener = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 16)
                #expect(unlink(path) == 0)
                let serve = try TestProcess(
                    [TestPaths.executable("baton"), "serve", "--config", configPath],
                    environment: TestPaths.cleanEnvironment() + ["LISTEN_FDS=1", "LISTEN_FDNAMES=\(name)"], passFDs: [listener.fd], setListenPID: true)
                defer { _ = serve.stop() }
                #expect(serve.waitForLine(containing: "all 1 workers ready", timeout: .seconds(30)) != nil, "\(name): \(serve.stderrLines)")
                let status = try TestProcess.run([TestPaths.executable("baton"), "status", "--socket", directory + "/control.sock"])
                if name == "web" {
                    #expect(
                        status.stdout.contains(
                            "listening socket unix:\(path): its file was removed: no client can connect to it; restart the socket unit and baton"),
                        "\(status.stdout)")
                } else {
                    #expect(!status.stdout.contains("its file was removed"), "\(status.stdout)")
                    #expect(serve.stderrLines.contains { $0.contains("has no file at \(path) any more: bound again") }, "\(serve.stderrLines)")
                    #expect(Sockets.unixSocketAnswers(path), "nothing listens at \(path)")
                }
                #expect(serve.stop() == 0)
                _ = unlink(path)
            }
        }
    }
}
