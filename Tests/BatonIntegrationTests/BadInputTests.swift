import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension SecondIntegration {
    /// Bad config, bad arguments, control-socket garbage and unauthorised peers
    /// get one clear line and a non-zero exit; the running daemon keeps running.
    @Suite("bad input")
    struct BadInputTests {
        /// One worker of /bin/true with its state and runtime directories in `directory`.
        static func shop(in directory: String) -> String {
            """
            [app]
            name = "shop"
            command = ["/bin/true"]
            directory = "/tmp"
            workers = 1
            state_directory = "\(directory)/state"
            runtime_directory = "\(directory)/run"

            """
        }

        @Test("check-config names the key and line; serve refuses a bad config with exit 2")
        func badConfig() throws {
            let directory = TestPaths.temporaryDirectory("cfg")
            defer { TestPaths.remove(directory) }
            let path = directory + "/bad.toml"
            TestPaths.write(
                path,
                """
                [app]
                name = "shop"
                command = ["/bin/true"]
                directory = "/tmp"
                workers = 0
                """)
            let baton = TestPaths.executable("baton")
            let check = try TestProcess.run([baton, "check-config", path])
            #expect(check.code == 2)
            #expect(check.stderr == "baton: \(path):5: app.workers: must be between 1 and 1024, got 0")
            // Under systemd, `systemctl status` shows why too (a systemd/CI audit: only
            // "status=2"): the error is baton's last STATUS=.
            let notify = try NotifyRecorder(path: directory + "/notify.sock")
            let serve = try TestProcess.run([baton, "serve", "--config", path], environment: TestPaths.cleanEnvironment() + ["NOTIFY_SOCKET=\(notify.path)"])
            #expect(serve.code == 2)
            #expect(serve.stderr.hasPrefix("baton: \(path):5: app.workers"))
            #expect(notify.waitFor(line: "STATUS=\(path):5: app.workers: must be between 1 and 1024, got 0", timeout: .seconds(10)) != nil, "\(notify.all)")

            TestPaths.write(path, "[app]\nname = \"shop\"\ncommand = \"bundle exec puma\"\ndirectory = \"/tmp\"\nworkers = 2\n")
            let shell = try TestProcess.run([baton, "check-config", path])
            #expect(shell.code == 2)
            #expect(shell.stderr.contains(":3: app.command: must be an array of strings (argv), not a shell string"), "\(shell.stderr)")

            let missing = try TestProcess.run([baton, "check-config", directory + "/nope.toml"])
            #expect(missing.code == 2)
            #expect(missing.stderr.contains("nope.toml: cannot read: No such file or directory"))
        }

        /// /dev/zero as the config was read without end, and a FIFO made `check-config` and
        /// `serve` wait for a writer forever (SIGTERM did not stop `serve`): a device or a
        /// directory is refused before a byte is read, and a pipe is read within 10 s
        /// (RegularFileTests: a FIFO nobody writes to fails then). A CLI still running after
        /// 10 s is killed and fails the test.
        @Test("a config that is a device or a directory: one line, exit 2; one from a pipe is read")
        func configNotARegularFile() throws {
            let baton = TestPaths.executable("baton")
            let directory = TestPaths.temporaryDirectory("badfile")
            defer { TestPaths.remove(directory) }
            let cases: [([String], String)] = [
                (["check-config", "/dev/null"], "baton: /dev/null: is not a regular file (a character device)"),
                (["serve", "--config", "/dev/null"], "baton: /dev/null: is not a regular file (a character device)"),
                (["check-config", directory], "baton: \(directory): is not a regular file (a directory)"),
            ]
            for (arguments, message) in cases {
                let process = try TestProcess([baton] + arguments)
                let code = process.wait(timeout: .seconds(10))
                if code == nil { _ = process.stop(timeout: .seconds(5)) }
                #expect(code == 2, "\(arguments) still running after 10 s, or exit \(String(describing: code))")
                #expect(process.stderrLines == [message], "\(arguments)")
            }
            let config = directory + "/shop.toml"
            TestPaths.write(config, "[app]\nname = \"shop\"\ncommand = [\"/bin/true\"]\ndirectory = \"/tmp\"\nworkers = 1\n")
            let piped = try TestProcess.run(["/bin/sh", "-c", "cat \"$0\" | \"$1\" check-config /dev/stdin", config, baton], timeout: .seconds(20))
            #expect(piped.code == 0 && piped.stdout.hasPrefix("/dev/stdin: ok"), "\(piped.stdout) \(piped.stderr)")
        }

        /// A control socket path that is a directory or a file failed `serve` with "Address
        /// already in use" after check-config said ok; no listen address (and no socket
        /// activation) was exit 1; `demo --directory ""` or `/` put the demo's folders in /.
        @Test("setup mistakes: a socket path taken by a file, no listen address, a demo in /: one line, exit 2")
        func setupMistakes() throws {
            let baton = TestPaths.executable("baton")
            let directory = TestPaths.temporaryDirectory("setup")
            defer { TestPaths.remove(directory) }
            let base = Self.shop(in: directory)
            let taken = directory + "/taken"
            #expect(mkdir(taken, 0o755) == 0)
            let path = directory + "/shop.toml"
            TestPaths.write(path, base + "[control]\nsocket = \"\(taken)\"\n")
            for verb in [["check-config", path], ["serve", "--config", path]] {
                let result = try TestProcess.run([baton] + verb, timeout: .seconds(20))
                #expect(result.code == 2, "\(verb): exit \(result.code)")
                #expect(result.stderr == "baton: \(path):9: control.socket: \(taken) exists and is a directory, not a socket", "\(result.stderr)")
            }
            // An unknown `[listen] socket_group`: named, as the other groups are.
            TestPaths.write(path, base + "[listen]\nsocket_group = \"nosuchgroup\"\n")
            let group = try TestProcess.run([baton, "check-config", path], timeout: .seconds(20))
            #expect(group.code == 2 && group.stderr.contains("listen.socket_group: unknown group \"nosuchgroup\""), "\(group.stderr)")
            // Another app's state directory, which serve refuses (a re-audit: check-config passed).
            let state = directory + "/others-state"
            #expect(mkdir(state, 0o750) == 0)
            TestPaths.write(state + "/release.json", #"{"app":"other","current":{"directory":"/srv/x"}}"#)
            TestPaths.write(path, base.replacingOccurrences("state_directory = \"\(directory)/state\"", with: "state_directory = \"\(state)\""))
            let others = try TestProcess.run([baton, "check-config", path], timeout: .seconds(20))
            #expect(others.code == 2 && others.stderr.contains("holds the release state of app \"other\""), "exit \(others.code): \(others.stderr)")
            // A symlink there, even a dangling one: bind never follows it.
            let link = directory + "/link.sock"
            #expect(symlink(directory + "/nowhere", link) == 0)
            TestPaths.write(path, base + "[control]\nsocket = \"\(link)\"\n")
            let linked = try TestProcess.run([baton, "check-config", path], timeout: .seconds(20))
            #expect(
                linked.code == 2 && linked.stderr == "baton: \(path):9: control.socket: \(link) exists and is a symbolic link, not a socket", "\(linked.stderr)"
            )
            TestPaths.write(path, base + "[listen]\naddresses = []\n[control]\nsocket = \"\(directory)/control.sock\"\n")
            let noListener = try TestProcess.run([baton, "serve", "--config", path], environment: TestPaths.cleanEnvironment(), timeout: .seconds(20))
            #expect(noListener.code == 2, "exit \(noListener.code): \(noListener.stderr)")
            #expect(noListener.stderr.hasSuffix("baton: no listening socket: not socket-activated and listen.addresses is empty"), "\(noListener.stderr)")
            // check-config passes it (socket activation gives the sockets), and says what serve needs.
            let checked = try TestProcess.run([baton, "check-config", path], timeout: .seconds(20))
            #expect(checked.code == 0, "\(checked.stderr)")
            #expect(
                checked.stdout.hasSuffix(
                    "note: no [listen] addresses: baton serve takes its sockets from systemd socket activation (outside it, it exits 2)\n"),
                "\(checked.stdout)")
            for folder in ["", "/", "relative", "/tmp", "//tmp/./", directory + "/../" + String(repeating: "x", count: 90)] {
                let demo = try TestProcess.run([baton, "demo", "--port", "0", "--directory", folder], timeout: .seconds(20))
                #expect(demo.code == 2 && demo.stderr.hasPrefix("baton: --directory must be "), "\(folder): \(demo.stderr)")
            }
        }

        /// A scale audit (3 of 3): a socket unit passing a datagram socket (ListenDatagram=
        /// beside ListenStream=) or a stream socket that does not listen made `baton serve`
        /// exit 1, the shipped unit's restart case, with "Socket operation on non-socket".
        @Test("socket activation with a socket baton cannot serve: one line naming it, exit 2")
        func activationWithASocketBatonCannotServe() throws {
            let baton = TestPaths.executable("baton")
            let directory = TestPaths.temporaryDirectory("activ")
            defer { TestPaths.remove(directory) }
            let path = directory + "/shop.toml"
            TestPaths.write(path, Self.shop(in: directory) + "[control]\nsocket = \"\(directory)/control.sock\"\n")
            for (type, what) in [(Int32(SOCK_DGRAM.rawValue), "a datagram socket"), (Int32(SOCK_STREAM.rawValue), "a stream socket that does not listen")] {
                let fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
                try #require(fd >= 0)
                defer { close(fd) }
                let serve = try TestProcess(
                    [baton, "serve", "--config", path], environment: TestPaths.cleanEnvironment() + ["LISTEN_FDS=1", "LISTEN_FDNAMES=web"], passFDs: [fd],
                    setListenPID: true)
                let code = serve.wait(timeout: .seconds(20))
                if code == nil { _ = serve.stop() }
                #expect(code == 2, "exit \(String(describing: code)): \(serve.stderrLines)")
                #expect(
                    serve.stderrLines.last
                        == "baton: socket activation: fd 3 (web) is \(what), not a listening stream socket: baton serves ListenStream= sockets only",
                    "\(serve.stderrLines)")
            }
        }

        /// A listeners audit: a socket unit passing other sockets than `[listen]` names was one
        /// WARN line; `systemctl restart` returned 0 and status listed the unit's sockets alone.
        @Test("socket activation with other sockets than [listen] names: said, and a problem in status")
        func activationWithOtherSocketsThanListen() throws {
            let directory = TestPaths.temporaryDirectory("mismatch")
            defer { TestPaths.remove(directory) }
            let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 16)
            let other = "127.0.0.1:\(HTTP.freePort())"
            let path = directory + "/shop.toml"
            TestPaths.write(
                path,
                Self.shop(in: directory).replacingOccurrences(of: "[\"/bin/true\"]", with: "[\"\(TestPaths.executable("baton-demo-worker"))\"]")
                    + "[listen]\naddresses = [\"\(listener.address)\", \"\(other)\"]\n[readiness]\nmode = \"notify\"\n[control]\nsocket = \"\(directory)/control.sock\"\n"
            )
            let serve = try TestProcess(
                [TestPaths.executable("baton"), "serve", "--config", path], environment: TestPaths.cleanEnvironment() + ["LISTEN_FDS=1", "LISTEN_FDNAMES=web"],
                passFDs: [listener.fd], setListenPID: true)
            defer { _ = serve.stop() }
            #expect(serve.waitForLine(containing: "all 1 workers ready", timeout: .seconds(30)) != nil, "\(serve.stderrLines)")
            let status = try TestProcess.run([TestPaths.executable("baton"), "status", "--socket", directory + "/control.sock"])
            #expect(
                status.stdout.contains("[listen] addresses (\(listener.address), \(other)) are not the sockets systemd passed (\(listener.address))"),
                "\(status.stdout)")
            // Put right by a reload: said no more (a re-audit: the start's line stayed).
            TestPaths.write(path, (ProcFS.read(path) ?? "").replacingOccurrences(of: ", \"\(other)\"]", with: "]"))
            let reload = try TestProcess.run([TestPaths.executable("baton"), "reload", "--socket", directory + "/control.sock"])
            #expect(reload.code == 0, "\(reload.stderr)")
            let after = try TestProcess.run([TestPaths.executable("baton"), "status", "--socket", directory + "/control.sock"])
            #expect(!after.stdout.contains("are not the sockets systemd passed"), "\(after.stdout)")
        }

        /// A systemd audit (2 of 2): a socket unit with `FileDescriptorName=bound-foo` on the
        /// address `[listen]` names. baton took the socket for a stale one of its own FD store,
        /// closed it and bound `[listen]` itself, on the port the unit still held: `bind …:
        /// Address already in use`, exit 1, restarted by `Restart=on-failure` until systemd gave
        /// up with the port closed, and no line named the socket. Without `[listen]` the line
        /// said "not socket-activated".
        @Test("socket activation with a unit's socket named bound-…: one line naming it, exit 2, with or without [listen]")
        func activationWithAUnitSocketNamedLikeAStoredOne() throws {
            let baton = TestPaths.executable("baton")
            let directory = TestPaths.temporaryDirectory("bound")
            defer { TestPaths.remove(directory) }
            let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 16)
            let control = "[control]\nsocket = \"\(directory)/control.sock\"\n"
            let other = "127.0.0.1:\(HTTP.freePort())"
            let ours =
                "names that begin with \"bound-\" are baton's own, for the sockets it binds itself and keeps in systemd's FD store; "
                + "give the socket unit another FileDescriptorName="
            let cases = [
                (
                    "listen", "bound-foo", "[listen]\naddresses = [\"\(listener.address)\"]\n",
                    "baton: systemd passed a socket named \"bound-foo\" on \(listener.address), an address of [listen]: " + ours
                ),
                (
                    "none", "bound-foo", "",
                    "baton: no listening socket: listen.addresses is empty, and systemd passed only sockets named like the ones baton keeps in its FD store "
                        + "(bound-foo): a socket unit's FileDescriptorName= must not begin with \"bound-\""
                ),
                // A re-audit (2 of 2): the stored name of a [listen] address on another port was
                // served silently; the configured port refused connections.
                (
                    "elsewhere", Sockets.fdName(for: ListenAddress.parse(other)!), "[listen]\naddresses = [\"\(other)\"]\n",
                    "baton: systemd passed a socket named \"\(Sockets.fdName(for: ListenAddress.parse(other)!))\" on \(listener.address), not on \(other), "
                        + "the address that name stands for: " + ours
                ),
            ]
            for (tag, name, listen, line) in cases {
                let path = directory + "/\(tag).toml"
                TestPaths.write(path, Self.shop(in: directory + "/" + tag) + listen + control)
                let serve = try TestProcess(
                    [baton, "serve", "--config", path], environment: TestPaths.cleanEnvironment() + ["LISTEN_FDS=1", "LISTEN_FDNAMES=\(name)"],
                    passFDs: [listener.fd], setListenPID: true)
                let code = serve.wait(timeout: .seconds(20))
                if code == nil { _ = serve.stop() }
                #expect(code == 2, "\(tag): exit \(String(describing: code)): \(serve.stderrLines)")
                #expect(serve.stderrLines.last == line, "\(tag): \(serve.stderrLines)")
            }
            // The socket is the test's still, listening.
            #expect(Sockets.isListeningStream(listener.fd))
        }

        /// A peer at the control socket that never ends its reply line: the CLI waited one read
        /// at a time without end (each byte restarting the read timeout) and buffered without
        /// bound. Now a line has the client's whole timeout, and at most 64 MiB.
        @Test("a reply line that never ends: the client's timeout holds for the whole line (exit 4), and 64 MiB at most (exit 1)")
        func endlessReplyLine() throws {
            let directory = TestPaths.temporaryDirectory("peer")
            defer { TestPaths.remove(directory) }
            let baton = TestPaths.executable("baton")

            /// Serves one client: reads its request, then `reply` writes to it until it returns.
            func fakeDaemon(_ name: String, reply: @escaping @Sendable (Int32) -> Void) throws -> (String, BatonTestSupport.Thread) {
                let path = directory + "/" + name
                let listener = try Sockets.bindUnix(path: path, type: Int32(SOCK_STREAM.rawValue), mode: 0o600)
                try #require(listen(listener, 1) == 0)
                let thread = BatonTestSupport.Thread {
                    // At most 20 s for the CLI to connect, so the thread always ends.
                    var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                    let client = poll(&entry, 1, 20_000) == 1 ? accept(listener, nil, nil) : -1
                    close(listener)
                    guard client >= 0 else { return }
                    var byte: UInt8 = 0
                    while read(client, &byte, 1) == 1, byte != 0x0A {}
                    reply(client)
                    close(client)
                }
                return (path, thread)
            }

            // One byte every 100 ms for at most 5 s; `reload --timeout 1s` gives the line 1 s.
            let (slow, trickler) = try fakeDaemon("slow.sock") { client in
                for _ in 0..<50 {
                    var x = UInt8(ascii: "x")
                    guard send(client, &x, 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
                    var none = pollfd(fd: -1, events: 0, revents: 0)
                    _ = poll(&none, 0, 100)
                }
            }
            let timedOut = try TestProcess.run([baton, "reload", "--socket", slow, "--timeout", "1s"], timeout: .seconds(20))
            trickler.join()
            #expect(timedOut.code == 4, "exit \(timedOut.code): \(timedOut.stderr)")
            #expect(timedOut.stderr == "baton: timed out waiting for the daemon at \(slow)")

            // 65 MiB without a newline, then silence until the client hangs up.
            let (huge, flooder) = try fakeDaemon("huge.sock") { client in
                let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
                for _ in 0..<65 {
                    guard chunk.withUnsafeBytes({ send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == chunk.count else { return }
                }
                var byte: UInt8 = 0
                _ = read(client, &byte, 1)
            }
            // Not baton's protocol: exit 3 (no daemon of baton's reached), naming the socket
            // (an operator audit: exit 1, "the daemon sent an unreadable reply").
            let (garbled, writer) = try fakeDaemon("garbled.sock") { client in
                _ = "HTTP/1.1 400 Bad Request\r\n\r\n".withCString { send(client, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            }
            let notBaton = try TestProcess.run([baton, "deploy", "--socket", garbled, "--release", "/srv/r1"], timeout: .seconds(30))
            writer.join()
            #expect(
                notBaton.code == 3 && notBaton.stderr == "baton: the daemon at \(garbled) sent a reply that is not baton's control protocol",
                "\(notBaton.stderr)")
            // JSON that is not baton's either (a re-audit: `{"ok": true}` printed "done", exit 0).
            let (json, answerer) = try fakeDaemon("json.sock") { client in
                _ = "{\"ok\": true}\n".withCString { send(client, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            }
            let notBatonJSON = try TestProcess.run([baton, "deploy", "--socket", json, "--release", "/srv/r1"], timeout: .seconds(30))
            answerer.join()
            #expect(notBatonJSON.code == 3 && notBatonJSON.stderr.hasSuffix("not baton's control protocol"), "\(notBatonJSON.stderr)")

            let capped = try TestProcess.run([baton, "status", "--socket", huge], timeout: .seconds(30))
            flooder.join()
            #expect(capped.code == 1, "exit \(capped.code): \(capped.stderr)")
            #expect(capped.stderr == "baton: the daemon at \(huge) sent a reply line over 64 MiB")

            // An operator audit: a daemon that never answers (SIGSTOPped, or another program on
            // the socket) held `deploy --timeout 3s` without end, and its interrupt line said the
            // deploy went on in baton, which had never answered. (The 30 s bound on the first
            // answer is checked by hand: a test would wait it out.)
            let received = Protected(false)
            let (mute, listener) = try fakeDaemon("mute.sock") { client in
                received.withLock { $0 = true }
                var byte: UInt8 = 0
                _ = read(client, &byte, 1)
            }
            let cli = try TestProcess([baton, "deploy", "--socket", mute, "--release", "/srv/r1", "--timeout", "3s"])
            for _ in 0..<1000 where !received.withLock({ $0 }) { pause(0.01) }
            cli.signal(SIGTERM)
            #expect(cli.wait(timeout: .seconds(10)) != nil && cli.killedBy == SIGTERM)
            listener.join()
            #expect(
                cli.stderrLines.contains(
                    "baton: interrupted before baton answered: the deploy may run or not; see `baton status`, follow it with `baton deploy --attach --release /srv/r1 --socket \(mute)`"
                ),
                "\(cli.stderrLines)")
            // An attach starts nothing: no "may run" for it (a re-audit).
            let heard = Protected(false)
            let (quiet, quietListener) = try fakeDaemon("quiet.sock") { client in
                heard.withLock { $0 = true }
                var byte: UInt8 = 0
                _ = read(client, &byte, 1)
            }
            let attach = try TestProcess([baton, "deploy", "--socket", quiet, "--attach"])
            for _ in 0..<1000 where !heard.withLock({ $0 }) { pause(0.01) }
            attach.signal(SIGTERM)
            #expect(attach.wait(timeout: .seconds(10)) != nil && attach.killedBy == SIGTERM)
            quietListener.join()
            #expect(!attach.stderrLines.contains { $0.contains("may run") }, "\(attach.stderrLines)")
            // A queued rollback has no attach of its own until it runs (a re-audit: `baton deploy
            // --attach`, as its line said, followed the deploy ahead and exited 0).
            let (queue, queueListener) = try fakeDaemon("queue.sock") { client in
                var line = ControlProtocol.encodeLine(ControlReply.progress("waiting: a deploy is in progress; this rollback runs after it"))
                _ = line.withUnsafeMutableBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var byte: UInt8 = 0
                _ = read(client, &byte, 1)
            }
            let rollback = try TestProcess([baton, "rollback", "--socket", queue, "--wait"])
            #expect(rollback.waitForStdout(containing: "waiting: a deploy is in progress", timeout: .seconds(10)))
            rollback.signal(SIGINT)
            #expect(rollback.wait(timeout: .seconds(10)) != nil && rollback.killedBy == SIGINT)
            queueListener.join()
            #expect(
                rollback.stderrLines.contains(
                    "baton: interrupted: the rollback stays queued in baton; see it with `baton status`, its outcome with `baton history`"),
                "\(rollback.stderrLines)")
        }

        @Test("bad CLI arguments: one line, exit 2")
        func badArguments() throws {
            let baton = TestPaths.executable("baton")
            let unknown = try TestProcess.run([baton, "frobnicate"])
            #expect(unknown.code == 2)
            #expect(unknown.stderr.hasPrefix("baton: unknown command 'frobnicate' (one of: serve, demo, "), "\(unknown.stderr)")
            // A mistyped verb was reported as its first option (a hostile-input audit:
            // `baton statuss --socket X` said "Unknown option '--socket'").
            let typo = try TestProcess.run([baton, "statuss", "--socket", "/x"])
            #expect(typo.code == 2 && typo.stderr.hasPrefix("baton: unknown command 'statuss'") && !typo.stderr.contains("\n"), "\(typo.stderr)")
            // Another supervisor's verbs and its `-c` (a habits audit: "unknown command" alone;
            // `status -c FILE` said "say which daemon").
            let restart = try TestProcess.run([baton, "restart"])
            #expect(restart.code == 2 && restart.stderr.contains("; a rolling restart of the workers is baton reload;"), "\(restart.stderr)")
            let scale = try TestProcess.run([baton, "scale", "5"])
            #expect(scale.code == 2 && scale.stderr.contains("; the number of workers is [app] workers"), "\(scale.stderr)")
            let short = try TestProcess.run([baton, "status", "-c", "/etc/baton/shop.toml"])
            #expect(short.code == 2 && short.stderr.hasPrefix("baton: Unknown option '-c' (the config is --config FILE)"), "\(short.stderr)")
            // An argument that is not UTF-8 (a names audit: Swift read it with U+FFFD, a worker got
            // those bytes in its `--env`, a folder "is not a directory").
            let notUTF8 = try TestProcess.run(["/bin/sh", "-c", #"exec "$0" deploy --socket /x --release "$(printf '/srv/a\377b')""#, baton])
            #expect(notUTF8.code == 2, "exit \(notUTF8.code): \(notUTF8.stderr)")
            #expect(
                notUTF8.stderr == "baton: argument 5 (/srv/a?b, ASCII shown, ? for any other byte) is not UTF-8: baton takes paths, names and values in UTF-8")
            let noTarget = try TestProcess.run([baton, "status"])
            #expect(noTarget.code == 2)
            #expect(noTarget.stderr.contains("--app NAME, --config FILE or --socket PATH"))
            let badTimeout = try TestProcess.run([baton, "reload", "--socket", "/nonexistent", "--timeout", "soon"])
            #expect(badTimeout.code == 2)
            // Checked only after connecting, so with no daemon it was exit 3.
            let badUpgradeTimeout = try TestProcess.run([baton, "upgrade", "--socket", "/nonexistent", "--timeout", "5"])
            #expect(badUpgradeTimeout.code == 2 && badUpgradeTimeout.stderr.hasPrefix("baton: --timeout: expected a duration"), "\(badUpgradeTimeout.stderr)")
            // Found by a hostile-input audit: "-1s" read as an unknown flag ("Missing value for
            // '--timeout <timeout>'" and a literal "\n Help:"), "0s" was accepted and failed the
            // deploy at once (exit 4), and an overflowing one said "expected a duration".
            let timeouts = [("-1s", "must not be negative"), ("0s", "must be more than 0s"), ("3000000h", "too large")]
            for verb in [["deploy", "--release", "/srv/app/r1"], ["reload"], ["upgrade"]] {
                for (value, problem) in timeouts {
                    let bad = try TestProcess.run([baton, verb[0], "--socket", "/nonexistent"] + verb.dropFirst() + ["--timeout", value])
                    #expect(bad.code == 2, "\(verb[0]) \(value): \(bad.stderr)")
                    #expect(bad.stderr.hasPrefix("baton: --timeout: \(problem), got \"\(value)\"") && !bad.stderr.contains("\n"), "\(verb[0]): \(bad.stderr)")
                }
            }
            // Usage errors were two lines (the hint on a second); an app name with a path in it,
            // or an empty --socket, was exit 3 ("cannot reach the daemon at /run/baton/../..").
            let unknownOption = try TestProcess.run([baton, "status", "--app", "shop", "--bogus"])
            #expect(unknownOption.code == 2)
            #expect(unknownOption.stderr == "baton: Unknown option '--bogus'; run 'baton help' for usage")
            for app in ["../../etc", "a/b", "", ".."] {
                let bad = try TestProcess.run([baton, "status", "--app", app])
                #expect(bad.code == 2, "--app \(app)")
                #expect(bad.stderr.hasPrefix("baton: --app must be 1 to 64 characters") && !bad.stderr.contains("\n"), "\(bad.stderr)")
            }
            // A newline in the value cut the line at it (and the quote and the rest went).
            let newline = try TestProcess.run([baton, "status", "--app", "a\nb"])
            #expect(newline.stderr.hasSuffix(#"got "a\nb"; run 'baton help' for usage"#) && !newline.stderr.contains("\n"), "\(newline.stderr)")
            // An operator audit: a mistyped option read as the option missing ("say which
            // daemon: …" for `status --control X`, "--release DIR is required" for --relase).
            for (arguments, option) in [
                (["status", "--control", "/x"], "--control"), (["deploy", "--relase", "/x", "--socket", "/s"], "--relase"),
                (["history", "--sock=/x"], "--sock"),
            ] {
                let typo = try TestProcess.run([baton] + arguments)
                #expect(typo.code == 2 && typo.stderr == "baton: Unknown option '\(option)'; run 'baton help' for usage", "\(arguments): \(typo.stderr)")
            }
            // The app's own options after --command are the app's.
            let appOptions = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--command", "x", "--workers", "2"])
            #expect(appOptions.code == 2 && appOptions.stderr == "baton: --release DIR is required; run 'baton help' for usage", "\(appOptions.stderr)")
            let emptySocket = try TestProcess.run([baton, "status", "--socket", ""])
            #expect(emptySocket.code == 2 && emptySocket.stderr.hasPrefix("baton: --socket must not be empty"), "\(emptySocket.stderr)")
            let unreachable = try TestProcess.run([baton, "status", "--socket", "/tmp/baton-no-such.sock"])
            #expect(unreachable.code == 3)
            #expect(unreachable.stderr.contains("cannot reach the daemon"))
            #expect(unreachable.stdout.isEmpty)
            // With --json the CLI's own errors are a reply line on stdout too, as the daemon's
            // failures are (left over from a CI-door audit: `… --json | jq` read nothing).
            let json = try TestProcess.run([baton, "status", "--json", "--socket", "/tmp/baton-no-such.sock"])
            #expect(json.code == 3 && json.stderr.contains("cannot reach the daemon"))
            #expect(
                json.stdout == #"{"code":3,"error":"cannot reach the daemon at /tmp/baton-no-such.sock: No such file or directory","ok":false,"v":1}"# + "\n",
                "\(json.stdout)")
            let jsonUsage = try TestProcess.run([baton, "deploy", "--json", "--socket", "/tmp/baton-no-such.sock", "--relase", "/srv/r1"])
            #expect(
                jsonUsage.code == 2 && jsonUsage.stdout == #"{"code":2,"error":"Unknown option '--relase'","ok":false,"v":1}"# + "\n", "\(jsonUsage.stdout)")
            // After --command, --json is the app's.
            let appJSON = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--command", "x", "--json"])
            #expect(appJSON.code == 2 && appJSON.stdout.isEmpty, "\(appJSON.stdout)")
        }

        /// `baton deploy` is parsed on its own first (start-up); its errors and help must read as
        /// the whole command line's: `baton deploy`, one line, the same exit codes.
        @Test("baton deploy: usage errors, help and an unreachable daemon read as before")
        func deployArguments() throws {
            let baton = TestPaths.executable("baton")
            let noRelease = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock"])
            #expect(noRelease.code == 2)
            #expect(noRelease.stderr == "baton: --release DIR is required; run 'baton help' for usage")
            let relative = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--release", "x"])
            #expect(relative.code == 2)
            #expect(relative.stderr == "baton: --release must be an absolute path; run 'baton help' for usage")
            // Flags that do not apply were dropped without a word.
            for arguments in [
                ["deploy", "--socket", "/tmp/baton-no-such.sock", "--attach", "--dry-run"], ["preflight", "--pid", "1", "--socket", "/tmp/x.sock"],
            ] {
                let ignored = try TestProcess.run([baton] + arguments)
                #expect(ignored.code == 2 && !ignored.stderr.contains("\n"), "\(arguments): exit \(ignored.code), \(ignored.stderr)")
            }
            // A CI-door audit: "-1" was read as a flag ("Missing value for '--max-surge
            // <max-surge>'\nHelp: …", the \n literal), and with --strategy replace --max-surge
            // was dropped without a word.
            let deploy = [baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--release", "/srv/r1"]
            let cases: [([String], String)] = [
                (deploy + ["--max-surge", "-1"], "baton: --max-surge must be at least 1; run 'baton help' for usage"),
                (
                    deploy + ["--max-surge", "99999999999999999999"],
                    "baton: The value '99999999999999999999' is invalid for '--max-surge <max-surge>'; run 'baton help' for usage"
                ),
                (
                    deploy + ["--strategy", "replace", "--max-surge", "2"],
                    "baton: --max-surge is for surge and auto; replace drains first, [deploy] max_unavailable slots at once; run 'baton help' for usage"
                ),
                ([baton, "demo", "--workers", "-1"], "baton: --workers must be between 1 and 64; run 'baton help' for usage"),
                // Its runtime directory (`/run` in it) holds the notify sockets: 75 bytes at most.
                (
                    [baton, "demo", "--directory", "/tmp/" + String(repeating: "d", count: 67)],
                    "baton: --directory must be at most 71 bytes (its sockets' paths are limited); run 'baton help' for usage"
                ),
            ]
            for (arguments, line) in cases {
                let bad = try TestProcess.run(arguments)
                #expect(bad.code == 2 && bad.stderr == line, "\(arguments.dropFirst()): exit \(bad.code), \(bad.stderr)")
            }
            // `--attach --release DIR` follows that release's deploy: DIR is absolute, as a deploy's.
            let attachRelative = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--attach", "--release", "x"])
            #expect(attachRelative.code == 2 && attachRelative.stderr.hasPrefix("baton: --release must be an absolute path"), "\(attachRelative.stderr)")
            let attachRelease = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--attach", "--release", "/srv/r1"])
            #expect(attachRelease.code == 3 && attachRelease.stderr.contains("cannot reach the daemon"), "\(attachRelease.stderr)")
            // `--command` with nothing after it kept [app] command without a word.
            let bareCommand = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--release", "/srv/r1", "--command"])
            #expect(bareCommand.code == 2 && bareCommand.stderr.hasPrefix("baton: --command needs the release's argv after it"), "\(bareCommand.stderr)")
            let unknown = try TestProcess.run([baton, "deploy", "--frobnicate"])
            #expect(unknown.code == 2)
            #expect(unknown.stderr.hasPrefix("baton: "))
            let help = try TestProcess.run([baton, "deploy", "--help"])
            #expect(help.code == 0)
            #expect(help.stdout.contains("USAGE: baton deploy"), "\(help.stdout)")
            let unreachable = try TestProcess.run([baton, "deploy", "--socket", "/tmp/baton-no-such.sock", "--release", "/srv/r1"])
            #expect(unreachable.code == 3)
            #expect(unreachable.stderr.contains("cannot reach the daemon"))
        }

        /// Found by a hostile-input audit: "\r\n" in a release path forged a log line (Swift's
        /// "\r\n" is one Character, so a search for "\n" missed it), and a worker's escape
        /// sequences and NULs reached the log raw.
        @Test("control characters from a client or a worker are escaped in baton's log: no forged line")
        func logLinesCannotBeForged() throws {
            let script = TestPaths.temporaryDirectory("logesc") + "/worker"
            defer { TestPaths.remove(String(script.dropLast("/worker".count))) }
            TestPaths.write(
                script, "#!/bin/sh\nprintf 'esc\\033[31m nul\\000 cr\\r end\\n' >&2\nexec \(TestPaths.executable("baton-demo-worker"))\n", mode: 0o755)
            let baton = try BatonHarness(workers: 1, command: [script], tag: "logesc")
            defer { baton.stop() }
            let output = baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("esc") && $0.contains("end") }
            #expect(output?.contains("esc\\x1b[31m nul\\x00 cr\\r end") == true, "\(output ?? "no line")")
            let release = baton.directory + "/crlf\r\nFORGED ERROR line"
            #expect(mkdir(release, 0o755) == 0)
            // Refused now (a layout audit: such a name split every line naming it), in one line.
            let deployed = try baton.cli(["deploy", "--release", release])
            #expect(deployed.code == 2, "\(deployed.stderr)")
            #expect(deployed.stderr.contains("crlf??FORGED ERROR line\" has a control character in its path (shown as ?)"), "\(deployed.stderr)")
            #expect(deployed.stderr.split(separator: "\n").count == 1, "\(deployed.stderr)")
            let lines = baton.process.stderrLines
            #expect(!lines.contains { $0.hasPrefix("FORGED") }, "\(lines.suffix(20))")
            #expect(!lines.contains { $0.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" } })
        }

        @Test("control-socket garbage gets an error reply and the daemon keeps serving")
        func controlGarbage() throws {
            let baton = try BatonHarness(workers: 1, tag: "junk")
            defer { baton.stop() }
            let malformed = baton.rawControl(Array("hello\n".utf8))
            #expect(malformed?.contains("\"ok\":false") == true)
            #expect(malformed?.contains("malformed request") == true)
            let unknown = baton.rawControl(Array("{\"v\":1,\"cmd\":\"explode\"}\n".utf8))
            #expect(unknown?.contains("unknown command") == true)
            let version = baton.rawControl(Array("{\"v\":99,\"cmd\":\"status\"}\n".utf8))
            #expect(version?.contains("unsupported protocol version 99") == true)
            let binary = baton.rawControl([0xFF, 0x00, 0xFE, 0x0A])
            #expect(binary?.contains("malformed request") == true)
            let huge = baton.rawControl([UInt8](repeating: 0x41, count: 70 * 1024))
            #expect(huge?.contains("request too large") == true)
            // Logged like the other rejected requests (a hostile-input audit: it left no line).
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("control: rejected request: request too large") } != nil)
            // Connect and vanish without a request.
            _ = baton.rawControl([], readTimeout: .seconds(1))
            // A whole request ended by a half-close, no newline: it got no reply at all.
            let halfClosed = baton.rawControl(Array(#"{"v":1,"cmd":"status"}"#.utf8), halfClose: true)
            #expect(halfClosed?.contains(#""ok":true"#) == true, "\(halfClosed ?? "no reply")")

            // Refused requests are bad input, exit 2 (an out-of-range --max-surge, an --env name
            // no shell takes, an empty --command and --release / ran, or failed, with exit 0 or 1).
            let release = baton.directory + "/r-bad-input"
            mkdir(release, 0o755)
            let refusals: [([String], String)] = [
                (["deploy", "--release", release, "--max-surge", "1000000"], "--max-surge must be between 1 and 1, got 1000000"),
                (["deploy", "--release", "/"], "release / is a system directory, not a release folder"),
                (["deploy", "--release", release, "--command", ""], "--command must not be empty"),
                (["deploy", "--release", release, "--env", "1A=v"], "--env expects KEY=VALUE with KEY a variable name"),
            ]
            for (arguments, message) in refusals {
                let result = try baton.cli(arguments)
                #expect(result.code == 2, "\(arguments): exit \(result.code), \(result.stderr)")
                #expect(result.stderr.contains(message) && !result.stderr.contains("\n"), "\(arguments): \(result.stderr)")
            }
            // A request over 64 KiB in several sends: the daemon's reply, not "Invalid argument".
            let big = String(repeating: "v", count: 100_000)
            let tooLarge = try baton.cli(["deploy", "--release", release, "--env", "A1=\(big)", "--env", "A2=\(big)", "--env", "A3=\(big)"])
            #expect(tooLarge.code == 2 && tooLarge.stderr.hasPrefix("baton: request too large"), "exit \(tooLarge.code): \(tooLarge.stderr.prefix(200))")
            // A config of another app naming this one's control socket (a day-2 audit: its
            // deploy went into this app, exit 0): the daemon refuses it, exit 2.
            let configText = try #require(ProcFS.read(baton.configPath))
            let otherConfig = baton.directory + "/other-app.toml"
            TestPaths.write(
                otherConfig,
                configText.split(separator: "\n", omittingEmptySubsequences: false).map {
                    $0.hasPrefix("name = ") ? "name = \"other-app\"" : String($0)
                }.joined(separator: "\n"))
            let other = try baton.cli(["deploy", "--config", otherConfig, "--release", release], socket: false)
            #expect(other.code == 2 && other.stderr.contains(#"is app "test"'s, not "other-app"'s"#), "exit \(other.code): \(other.stderr)")
            // Every verb exits 2 on it (a multi-app audit: status, history and reload exited 1), and
            // `--socket PATH --app NAME`, as the generated unit's ExecReload, is checked too.
            for verb in [["status"], ["history"], ["reload"], ["status", "--json"]] {
                let refused = try baton.cli(verb + ["--config", otherConfig], socket: false)
                #expect(refused.code == 2, "\(verb): exit \(refused.code): \(refused.stderr)")
            }
            let unitReload = try baton.cli(["reload", "--socket", baton.controlSocket, "--app", "other-app"], socket: false)
            #expect(unitReload.code == 2 && unitReload.stderr.contains("not \"other-app\"'s"), "exit \(unitReload.code): \(unitReload.stderr)")
            let status = try baton.status()
            #expect(status.workers.first?.state == "ready")
            #expect(status.release != release)
            #expect(baton.process.exitCode == nil)
        }

        /// A pid-1 audit: a user the socket's mode keeps out got "cannot reach the daemon …:
        /// Permission denied", exit 3, as if baton were down; a refusal is exit 1.
        @Test("a user the control socket's mode keeps out is refused with exit 1, not told the daemon is down")
        func socketModeRefusal() throws {
            let baton = try BatonHarness(workers: 1, tag: "auth3")
            defer { baton.stop() }
            chmod(baton.directory, 0o755)
            let nobody = Credentials(uid: 65534, gid: 65534, groups: [65534])
            let refused = try runAs(nobody, [TestPaths.executable("baton"), "status", "--socket", baton.controlSocket])
            #expect(refused.code == 1, "exit \(refused.code): \(refused.stderr)")
            #expect(refused.stderr.hasPrefix("baton: permission denied: cannot connect to \(baton.controlSocket)"), "\(refused.stderr)")
        }

        /// A docs audit: `[control] read_group` members could not connect to the 0660 socket at
        /// all (`Permission denied`, exit 3, "daemon down"). With a read group the socket is 0666
        /// and a peer that may run nothing is refused at connect.
        @Test("an unauthorised peer is refused; a control group member as a supplementary group is allowed; the read group reads")
        func peerCredentials() throws {
            // gid 50 ("staff" on Debian) as the control group, 60 as the read group; "nobody" is in neither.
            let second = try BatonHarness(
                workers: 1,
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    timeout = "20s"
                    """,
                tag: "auth2", controlGroup: "50", readGroup: "60")
            defer { second.stop() }
            chmod(second.directory, 0o755)
            let baton = TestPaths.executable("baton")
            let nobody = Credentials(uid: 65534, gid: 65534, groups: [65534])
            let withStaff = Credentials(uid: 65534, gid: 65534, groups: [65534, 50])
            let reader = Credentials(uid: 65534, gid: 65534, groups: [65534, 60])

            // Supplementary member of the control group: allowed.
            let allowed = try runAs(withStaff, [baton, "status", "--json", "--socket", second.controlSocket])
            #expect(allowed.code == 0, "\(allowed.stderr)")
            #expect(allowed.stdout.contains("\"workers\""))

            // The read group reads, and only reads.
            for verb in ["status", "history", "releases"] {
                let read = try runAs(reader, [baton, verb, "--socket", second.controlSocket])
                #expect(read.code == 0, "\(verb): exit \(read.code): \(read.stderr)")
            }
            // Refused requests of anyone but root and baton's uid: one line per 10 s (a sockets
            // audit: a read_group member's loop of reloads wrote 40,038 lines in 8 s).
            for _ in 0..<3 { _ = try runAs(reader, [baton, "reload", "--socket", second.controlSocket]) }
            let reload = try runAs(reader, [baton, "reload", "--socket", second.controlSocket])
            #expect(second.process.stderrLines.filter { $0.contains("reload refused for uid 65534") }.count == 1, "\(second.process.stderrLines.suffix(6))")
            #expect(
                reload.code == 1 && reload.stderr.contains("permission denied: uid 65534 is not root, baton's user, or in the control group"),
                "\(reload.stderr)")

            // In neither group: refused at connect, one line, exit 1, whatever it asks.
            for verb in ["status", "reload"] {
                let refused = try runAs(nobody, [baton, verb, "--socket", second.controlSocket])
                #expect(refused.code == 1, "\(verb): exit \(refused.code)")
                #expect(
                    refused.stderr.hasSuffix("permission denied: uid 65534 is not root, baton's user, or in the control group or the read group"),
                    "\(refused.stderr)")
            }
            #expect(second.process.waitForLine(timeout: .seconds(10)) { $0.contains("connection refused for uid 65534") } != nil)
            #expect(try second.status().state == "running")
        }

        private func runAs(_ credentials: Credentials, _ argv: [String]) throws -> CommandResult {
            let p = try TestProcess(argv, environment: TestPaths.cleanEnvironment(), credentials: credentials)
            let code = p.wait(timeout: .seconds(30)) ?? p.stop(timeout: .seconds(1))
            return CommandResult(code: code, stdout: p.stdout, stderr: p.stderrLines.joined(separator: "\n"))
        }
    }
}
