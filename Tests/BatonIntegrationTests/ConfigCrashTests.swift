import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// Config text that used to crash baton (an assertion inside the TOML parser, an overflow
    /// trap) or that passed check-config and then failed at start: each is now one line and
    /// exit 2, and a running daemon keeps serving.
    @Suite("config crash safety")
    struct ConfigCrashTests {
        /// The `[app]` table every case starts from.
        static let app = """
            [app]
            name = "shop"
            command = ["/bin/true"]
            directory = "/tmp"
            workers = 2

            """

        @Test("a typo in a table header that aborts the TOML parser: check-config and serve exit 2 with one line")
        func parserAssertion() throws {
            let directory = TestPaths.temporaryDirectory("crash")
            defer { TestPaths.remove(directory) }
            let baton = TestPaths.executable("baton")
            for header in ["[.deploy]", "[!app]"] {
                let path = directory + "/bad.toml"
                TestPaths.write(path, Self.app + header + "\n")
                let check = try TestProcess.run([baton, "check-config", path])
                #expect(check.code == 2, "\(header): \(check.stderr)")
                #expect(check.stderr.split(separator: "\n").count == 1, "\(check.stderr)")
                #expect(check.stderr.hasPrefix("baton: config parser crashed (signal 6) on \(path): "), "\(check.stderr)")
                let serve = try TestProcess.run([baton, "serve", "--config", path])
                #expect(serve.code == 2)
                #expect(serve.stderr.hasPrefix("baton: config parser crashed (signal 6) on \(path)"), "\(serve.stderr)")
            }
        }

        @Test("reload onto a config that aborts the parser fails with one line; the daemon and its workers keep serving")
        func reloadSurvivesParserAssertion() throws {
            let baton = try BatonHarness(workers: 2, tag: "crashrl")
            defer { baton.stop() }
            let before = try baton.status().workers.map(\.pid)
            let good = try #require(ProcFS.read(baton.configPath))
            TestPaths.write(baton.configPath, good + "\n[.deploy]\n")
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 2 || reload.code == 1, "\(reload.stderr)")
            #expect(reload.stderr.split(separator: "\n").count == 1, "\(reload.stderr)")
            #expect(reload.stderr.contains("config parser crashed (signal 6) on \(baton.configPath)"), "\(reload.stderr)")
            #expect(baton.process.exitCode == nil)
            let status = try baton.status()
            #expect(status.workers.map(\.pid) == before)
            #expect(HTTP.get(port: baton.port, path: "/")?.status == 200)
            // The same daemon still reloads a good config.
            TestPaths.write(baton.configPath, good)
            let fixed = try baton.cli(["reload"])
            #expect(fixed.code == 0, "\(fixed.stderr)")
        }

        @Test("preflight --need past any real size: exit 2 with one line, and the daemon survives a raw request too")
        func preflightNeedOverflow() throws {
            let baton = try BatonHarness(workers: 1, tag: "crashpf")
            defer { baton.stop() }
            let cli = try baton.cli(["preflight", "--need", "18446744073709551615B"])
            #expect(cli.code == 2, "\(cli.stderr)")
            #expect(cli.stderr.contains("--need"), "\(cli.stderr)")
            // A negative value is the option's, refused as such (a numeric audit: "Missing value
            // for '--need <need>'").
            for (option, value, message) in [
                ("--need", "-1B", #"--need expects a size like "512MiB", at most 1 PiB, got "-1B""#),
                ("--hold", "-1s", #"--hold expects a duration like "15m", more than 0 and at most 2h, got "-1s""#),
            ] {
                let negative = try baton.cli(["preflight", "--roll-ahead", "--need", "1MiB", option, value])
                #expect(negative.code == 2 && negative.stderr.contains(message), "\(negative.stderr)")
            }
            let raw = baton.rawControl(Array(#"{"v":1,"cmd":"preflight","preflight":{"need":"18446744073709551615B"}}"#.utf8 + [0x0A]))
            #expect(raw?.contains("\"ok\":false") == true, "\(raw ?? "no reply")")
            #expect(raw?.contains("at most 1 PiB") == true, "\(raw ?? "no reply")")
            #expect(baton.process.exitCode == nil)
            #expect(try baton.status().workers.first?.state == "ready")
        }

        @Test("start-up failures that come from the config are caught by check-config and exit 2 from serve")
        func hostChecks() throws {
            let directory = TestPaths.temporaryDirectory("crashhost")
            defer { TestPaths.remove(directory) }
            let baton = TestPaths.executable("baton")
            let path = directory + "/c.toml"
            let envFile = directory + "/bad.env"
            TestPaths.write(envFile, "GOOD=1\nthis is not an assignment\n")
            let cases: [(text: String, expected: String)] = [
                (
                    Self.app + "user = \"no-such-user-baton\"\n",
                    #"\#(path):6: app.user: unknown user "no-such-user-baton""#
                ),
                (
                    Self.app + "[listen]\naddresses = [\"127.0.0.1:18187\"]\n[metrics]\naddress = \"127.0.0.1:18187\"\n",
                    #"\#(path):9: metrics.address: must differ from the listen address "127.0.0.1:18187""#
                ),
                (
                    Self.app + "environment_file = \"\(envFile)\"\n",
                    "\(envFile):2: expected KEY=VALUE"
                ),
            ]
            for (text, expected) in cases {
                TestPaths.write(path, text)
                let check = try TestProcess.run([baton, "check-config", path])
                #expect(check.code == 2, "\(check.stdout) \(check.stderr)")
                #expect(check.stderr.hasPrefix("baton: " + expected), "\(check.stderr)")
                let serve = try TestProcess.run(
                    [baton, "serve", "--config", path],
                    environment: TestPaths.cleanEnvironment(adding: ["RUNTIME_DIRECTORY": directory, "STATE_DIRECTORY": directory]))
                #expect(serve.code == 2, "\(serve.stderr)")
                #expect(serve.stderr.hasPrefix("baton: " + expected), "\(serve.stderr)")
            }
        }

        @Test("integers past any sensible bound: check-config names the key and its range, exit 2, one line")
        func integerBounds() throws {
            let directory = TestPaths.temporaryDirectory("crashint")
            defer { TestPaths.remove(directory) }
            let path = directory + "/c.toml"
            let cases: [(text: String, expected: String)] = [
                ("start_concurrency = 1025\n", "6: app.start_concurrency: must be between 1 and 1024, got 1025"),
                ("start_attempts = 9223372036854775807\n", "6: app.start_attempts: must be between 0 and 1000, got 9223372036854775807"),
                ("[memory]\nsmaps_every = 1000001\n", "7: memory.smaps_every: must be between 1 and 1000, got 1000001"),
                ("[deploy]\nkeep_releases = 10001\n", "7: deploy.keep_releases: must be between 2 and 10000, got 10001"),
            ]
            for (text, expected) in cases {
                TestPaths.write(path, Self.app + text)
                let check = try TestProcess.run([TestPaths.executable("baton"), "check-config", path])
                #expect(check.code == 2, "\(text): \(check.stdout) \(check.stderr)")
                #expect(check.stderr == "baton: \(path):\(expected)", "\(check.stderr)")
            }
        }

        @Test("every input in Fuzz/crashes/config gets a config or one line from check-config, never a crash")
        func replayConfigCrashes() throws {
            let baton = TestPaths.executable("baton")
            let files = FuzzCorpus.files("crashes/config")
            #expect(files.count >= 4)
            for file in files {
                let check = try TestProcess.run([baton, "check-config", file])
                #expect(check.code == 0 || check.code == 2, "\(file): \(check.code) \(check.stderr)")
                #expect(check.stderr.split(separator: "\n").count <= 1, "\(file): \(check.stderr)")
            }
        }
    }
}
