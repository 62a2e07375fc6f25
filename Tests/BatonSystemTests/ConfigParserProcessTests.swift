import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// The child-process parse with the real `baton` binary (and stand-ins for a child that
/// hangs or fails): every outcome is a config or one line, never a crash of the caller.
@Suite("ConfigParserProcess")
struct ConfigParserProcessTests {
    static let app = "[app]\nname = \"shop\"\ncommand = [\"/bin/true\"]\ndirectory = \"/tmp\"\nworkers = 2\n"

    static func failure(_ text: String, executable: String = TestPaths.executable("baton"), timeout: Duration = .seconds(30))
        -> String?
    {
        do {
            _ = try ConfigParserProcess.parse(text, path: "shop.toml", executable: executable, timeout: timeout)
            return nil
        } catch {
            return error.description
        }
    }

    @Test("a valid config comes back as the in-process parse gives it")
    func valid() throws {
        let config = try ConfigParserProcess.parse(Self.app, path: "shop.toml", executable: TestPaths.executable("baton"))
        #expect(config == (try BatonConfig.parse(Self.app, path: "shop.toml")))
    }

    @Test("a validation error is the child's one line, exactly as in-process")
    func invalid() {
        let text = Self.app + "[deploy]\nmax_surge = 3\n"
        var inProcess: String?
        do { _ = try BatonConfig.parse(text, path: "shop.toml") } catch { inProcess = error.description }
        #expect(inProcess == "shop.toml:7: deploy.max_surge: must be between 1 and app.workers (2), got 3")
        #expect(Self.failure(text) == inProcess)
    }

    @Test("an abort inside the TOML parser is one line naming the signal and the file")
    func parserAbort() {
        let message = Self.failure(Self.app + "[.deploy]\n")
        #expect(message?.hasPrefix("config parser crashed (signal 6) on shop.toml: Assertion") == true, "\(message ?? "parsed")")
        #expect(message?.contains("\n") == false)
    }

    @Test("a child that hangs is killed at the deadline; one that fails says so")
    func hangingOrFailingChild() {
        let directory = TestPaths.temporaryDirectory("cpp")
        defer { TestPaths.remove(directory) }
        let hang = directory + "/hang"
        TestPaths.write(hang, "#!/bin/sh\nexec sleep 30\n", mode: 0o755)
        #expect(Self.failure(Self.app, executable: hang, timeout: .milliseconds(300)) == "shop.toml: config parser timed out after 300ms")
        let fail = directory + "/fail"
        TestPaths.write(fail, "#!/bin/sh\necho nope\nexit 1\n", mode: 0o755)
        #expect(Self.failure(Self.app, executable: fail) == "shop.toml: config parser failed (exit code 1): nope")
    }

    /// A names audit saw `config parser timed out after 10s` at load 23: `serve` exited 2, which
    /// the shipped unit's RestartPreventExitStatus=2 does not restart. A parser that could not
    /// run, timed out or was SIGKILLed is no config error: transient (serve exits 1).
    @Test("a parser that timed out, could not run or was killed is transient; a crash on the text is not")
    func transientFailures() {
        let directory = TestPaths.temporaryDirectory("cpp")
        defer { TestPaths.remove(directory) }
        func error(_ executable: String, timeout: Duration = .seconds(30)) -> ConfigError? {
            do {
                _ = try ConfigParserProcess.parse(Self.app, path: "shop.toml", executable: executable, timeout: timeout)
                return nil
            } catch {
                return error
            }
        }
        let hang = directory + "/hang"
        TestPaths.write(hang, "#!/bin/sh\nexec sleep 30\n", mode: 0o755)
        #expect(error(hang, timeout: .milliseconds(300))?.isTransient == true)
        #expect(error(directory + "/missing")?.isTransient == true)
        let killed = directory + "/killed"
        TestPaths.write(killed, "#!/bin/sh\nkill -9 $$\n", mode: 0o755)
        #expect(error(killed)?.isTransient == true)
        let fail = directory + "/fail"
        TestPaths.write(fail, "#!/bin/sh\necho nope\nexit 1\n", mode: 0o755)
        #expect(error(fail)?.isTransient == false)
        #expect(error(TestPaths.executable("baton")) == nil)
    }

    /// A soak audit: baton's memory grew with every reload. TOMLKit frees nothing it parsed, and
    /// the daemon parsed each reloaded config again after its child had: the config is now the
    /// child's answer, and the TOML parser never runs in the caller.
    @Test("the config is the child's answer: the caller does not parse the text again")
    func theConfigIsTheChildsAnswer() throws {
        let directory = TestPaths.temporaryDirectory("cpp")
        defer { TestPaths.remove(directory) }
        var other = try BatonConfig.parse(Self.app, path: "shop.toml")
        other.app.workers = 7
        let line = ConfigParserProcess.resultLine(other)
        #expect(line.hasPrefix("ok {") && !line.contains("\n"))
        let stand = directory + "/answer"
        TestPaths.write(stand, "#!/bin/sh\ncat <<'EOF'\n\(line)\nEOF\n", mode: 0o755)
        let config = try ConfigParserProcess.parse(Self.app, path: "shop.toml", executable: stand)
        #expect(config.app.workers == 7, "the text says 2: the caller parsed it itself")
        let silent = directory + "/ok"
        TestPaths.write(silent, "#!/bin/sh\necho ok\n", mode: 0o755)
        #expect(Self.failure(Self.app, executable: silent) == "shop.toml: config parser answered without the config: ok")
    }

    @Test("every section of a full config comes back from the child as parsed")
    func aFullConfigRoundTrips() throws {
        let text = try String(decoding: RegularFile.read(TestPaths.packageRoot + "/Fuzz/corpus/config/full.toml", maxBytes: 1 << 20), as: UTF8.self)
        let parsed = try BatonConfig.parse(text, path: "full.toml")
        #expect(try ConfigParserProcess.parse(text, path: "full.toml", executable: TestPaths.executable("baton")) == parsed)
    }

    @Test("a NUL byte is refused before any child runs")
    func nulBeforeChild() {
        #expect(Self.failure(Self.app + "\u{0}", executable: "/nonexistent") == "shop.toml:6: contains a NUL byte (a config is text)")
    }
}

extension ConfigParserProcessTests {
    /// A systemd audit: `systemctl kill -s HUP` (every process of the unit, by default) ended
    /// the parser child of the reload it asked for, and the reload failed as for a malformed
    /// config (`config parser crashed (signal 1)`). A re-audit: set by the child's own code, the
    /// start-up before it still died of them (19 of 20 reloads under a stream of SIGHUPs). They
    /// are ignored from the child's first instruction: its first line reads them so.
    @Test("the parser child ignores SIGHUP, SIGUSR1, SIGUSR2, SIGINT and SIGTERM from its start")
    func theParserIgnoresTheUnitsSignals() throws {
        let directory = TestPaths.temporaryDirectory("cpp-sig")
        defer { TestPaths.remove(directory) }
        let stand = directory + "/mask"
        TestPaths.write(stand, "#!/bin/sh\ngrep SigIgn /proc/$$/status\nexit 1\n", mode: 0o755)
        let message = Self.failure(Self.app, executable: stand) ?? ""
        let mask = message.split(separator: "\t").last.flatMap { UInt64($0.filter(\.isHexDigit), radix: 16) } ?? 0
        for sig in [SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGTERM] {
            #expect(mask & (1 << UInt64(sig - 1)) != 0, "signal \(sig) not ignored at the start: \(message)")
        }
        // The real parser still answers.
        #expect(try ConfigParserProcess.parse(Self.app, path: "shop.toml", executable: TestPaths.executable("baton")).app.workers == 2)
    }
}
