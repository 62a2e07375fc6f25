import BatonCore
import CBatonLinux
import FoundationEssentials
import Glibc

/// Runs the TOML parser on untrusted config text in a child process, and only there.
///
/// TOMLKit's C++ parser (toml++) aborts the whole process on some malformed input (a
/// one-character typo such as `[.deploy]` trips an `assert`), and no Swift error handling can
/// catch that. So the text is handed to `baton __parse-config PATH` (the same binary, run as
/// `/proc/self/exe`, the text on fd 3), which parses and validates exactly these bytes and
/// writes the config it read as JSON (``resultLine(_:)``); this process decodes that. A crash
/// of the child becomes the one-line error `config parser crashed (signal N) on FILE: ...`; the
/// caller (a reloading daemon, say) keeps running. TOMLKit also frees nothing it parsed (the
/// document's tree, its key lists): parsed in the daemon, every reload kept a few KiB for good
/// (a soak audit: baton's memory grew with every reload).
public enum ConfigParserProcess {
    /// What the child ignores: what `systemctl kill -s …` sends every process of a unit (its
    /// timeout's SIGKILL still ends it).
    public static let ignoredSignals: [Int32] = [SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGTERM]

    /// The hidden subcommand the child runs.
    public static let subcommand = "__parse-config"
    /// The descriptor the child reads the text from.
    public static let textFD: Int32 = 3
    /// How long the child may take before it is killed and the parse fails.
    public static let defaultTimeout: Duration = .seconds(10)
    /// The longest child output kept: a message is one line, a crash report is cut; the
    /// config's JSON is at most a few times the largest config text.
    static let maxOutput = 16 * 1024 + 8 * ConfigPrecheck.maxBytes

    /// Parses and validates `text` (the config at `path`) in a child, whose answer is the config.
    ///
    /// - Parameters:
    ///   - text: The config, read once by the caller; the child parses exactly these bytes.
    ///   - path: Where it came from, for messages.
    ///   - executable: The baton binary that has the ``subcommand``.
    ///   - timeout: The child's deadline.
    /// - Throws: ``ConfigError`` with one line: the child's validation error, its crash, or
    ///   why it could not be run.
    public static func parse(
        _ text: String, path: String, executable: String = "/proc/self/exe", timeout: Duration = defaultTimeout
    ) throws(ConfigError) -> BatonConfig {
        // Cheap checks first, in process: they need no parser.
        if let error = ConfigPrecheck.check(text.utf8, path: path) { throw error }
        let output = try check(text, path: path, executable: executable, timeout: timeout)
        guard let config = decodeResult(output) else {
            throw ConfigError(path: path, message: "config parser answered without the config: \(firstLine(output) ?? "no output")")
        }
        return config
    }

    /// What the child writes on success: `ok ` and the config as JSON, on one line.
    public static func resultLine(_ config: BatonConfig) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(config) else { return "ok" }
        return "ok " + String(decoding: data, as: UTF8.self)
    }

    /// The config in the child's output (its `ok ` line), nil when there is none.
    static func decodeResult(_ output: [UInt8]) -> BatonConfig? {
        let text = String(decoding: output, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ok {") }) else { return nil }
        return try? JSONDecoder().decode(BatonConfig.self, from: Data(line.dropFirst(3).utf8))
    }

    /// Runs the child on `text`; returns its output when it accepted it.
    static func check(_ text: String, path: String, executable: String, timeout: Duration) throws(ConfigError) -> [UInt8] {
        func failure(_ message: String) -> ConfigError {
            var error = ConfigError(path: path, message: "cannot run the config parser: \(message)")
            error.isTransient = true
            return error
        }
        // Owned: each closed once, on every way out (the pipe's write end as soon as the child
        // has its copy, so the read end sees end of file once the child is gone).
        let memfd: OwnedDescriptor
        do {
            memfd = OwnedDescriptor(try CBatonLinuxShim.memoryFile(name: "baton-config", bytes: Array(text.utf8)))
        } catch {
            throw failure("\(error)" + DescriptorLimit.hint(error))
        }
        let output: OwnedDescriptor
        var input: OwnedDescriptor? = nil
        do {
            let pipe = try CBatonLinuxShim.outputPipe()
            output = pipe.read
            input = consume pipe.write
        } catch {
            throw failure("\(error)" + DescriptorLimit.hint(error))
        }
        let child: ChildProcess
        do {
            // No backtracer in the child: its report is slow and many lines; the first line says it.
            // Registered: a daemon reaping its exited children on SIGCHLD leaves this one to us.
            let write = input?.rawValue ?? -1
            // The signals a unit's `systemctl kill` sends every process of it are ignored from
            // the child's start (a re-audit: set by its own code, the start-up before it, most of
            // its life, still died of them: 19 of 20 reloads failed under a stream of SIGHUPs).
            var request = SpawnRequest(
                argv: [executable, subcommand, path], environment: ["SWIFT_BACKTRACE=enable=no"],
                passFDs: [memfd.rawValue], stdout: write, stderr: write)
            request.ignoredSignals = ConfigParserProcess.ignoredSignals
            child = try SelfReapedChildren.spawn(request)
        } catch {
            throw failure("\(error)" + DescriptorLimit.hint(error))
        }
        input = nil  // closes it: the child holds the write end now
        defer {
            child.close()
            SelfReapedChildren.forget(child.pid)
        }
        return try verdict(of: child, output: output, path: path, timeout: timeout)
    }

    /// Reads what `child` writes to `pipe` and waits for its exit (killed at `timeout`);
    /// returns its output when it accepted the text.
    private static func verdict(
        of child: ChildProcess, output pipe: borrowing OwnedDescriptor, path: String, timeout: Duration
    ) throws(ConfigError) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        let output = collect(pipe.rawValue, pidfd: child.pidfd, until: deadline)
        guard let exit = waitForExit(child.pidfd, until: deadline) else {
            CBatonLinuxShim.signal(pidfd: child.pidfd, SIGKILL)
            _ = waitForExit(child.pidfd, until: ContinuousClock.now + .seconds(5))
            var error = ConfigError(path: path, message: "config parser timed out after \(Units.formatDuration(timeout))")
            error.isTransient = true
            throw error
        }
        switch exit {
        case .exited(0):
            return output
        case .exited(2):
            // The child's own one-line ConfigError, already located.
            throw ConfigError(path: "", message: firstLine(output) ?? "\(path): invalid config")
        case .exited(let code):
            throw ConfigError(
                path: path, message: "config parser failed (exit code \(code)): \(firstLine(output) ?? "no output")")
        case .signaled(let signal):
            var error = ConfigError(
                path: "",
                message: "config parser crashed (signal \(signal)) on \(path): \(crashDetail(output))")
            // SIGKILL is the OOM killer's or an operator's, not the text's.
            error.isTransient = signal == SIGKILL
            throw error
        }
    }

    /// Reads `fd` until end of file or `deadline`, keeping at most ``maxOutput`` bytes.
    private static func collect(_ fd: Int32, pidfd: Int32, until deadline: ContinuousClock.Instant) -> [UInt8] {
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, milliseconds(until: deadline))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { return output }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            guard n > 0 else { return output }
            output += buffer[0..<min(n, max(0, maxOutput - output.count))]
        }
    }

    /// Waits for the child to exit and reaps it; nil when `deadline` passed first.
    private static func waitForExit(_ pidfd: Int32, until deadline: ContinuousClock.Instant) -> CBatonLinuxShim.Exit? {
        while true {
            if let exit = CBatonLinuxShim.exitStatus(pidfd: pidfd, reap: true) { return exit }
            var poller = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, milliseconds(until: deadline))
            if ready < 0, errno == EINTR { continue }
            // Past the deadline (or poll failing): one last look, then give up.
            if ready <= 0 { return CBatonLinuxShim.exitStatus(pidfd: pidfd, reap: true) }
        }
    }

    /// The time left until `deadline` for poll(2), at least 0.
    private static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let left = ContinuousClock.now.duration(to: deadline)
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
    }

    /// The first non-empty line of `output`, cut to 512 characters.
    static func firstLine(_ output: [UInt8]) -> String? {
        let text = String(decoding: output, as: UTF8.self)
        guard let line = text.split(whereSeparator: \.isNewline).first(where: { !$0.allSatisfy(\.isWhitespace) }) else {
            return nil
        }
        return line.count > 512 ? String(line.prefix(512)) + "…" : String(line)
    }

    /// What a crashed child said: the failed assertion or fatal error, else its first line.
    static func crashDetail(_ output: [UInt8]) -> String {
        let text = String(decoding: output, as: UTF8.self)
        for line in text.split(whereSeparator: \.isNewline) {
            for marker in ["Assertion", "Fatal error"] {
                if let range = line.firstRange(of: marker) {
                    let detail = line[range.lowerBound...]
                    return detail.count > 300 ? String(detail.prefix(300)) + "…" : String(detail)
                }
            }
        }
        return firstLine(output) ?? "no output"
    }
}
