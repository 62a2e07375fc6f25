import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc

/// A real `baton serve` started from a config the test writes, with its
/// control socket, runtime directory and release folder in a temp directory.
public final class BatonHarness: @unchecked Sendable {
    // @unchecked: immutable after init except through TestProcess (itself safe).
    /// The temp directory holding everything.
    public let directory: String
    /// The config file.
    public let configPath: String
    /// The control socket.
    public let controlSocket: String
    /// The release folder workers run in.
    public let releaseDirectory: String
    /// The daemon.
    public let process: TestProcess
    /// The TCP port workers accept on (bound by baton on 127.0.0.1:0), if any.
    public private(set) var port: UInt16 = 0

    /// The sections after `[app]` when a test gives none: notify readiness, listen on 127.0.0.1:0.
    public static let defaultSections = """
        [listen]
        addresses = ["127.0.0.1:0"]
        [readiness]
        mode = "notify"
        timeout = "20s"
        [stop]
        timeout = "10s"
        """

    /// A test config: `[app]` with runtime and state directories under `directory`, then
    /// `sections`, then `[control]` with `controlSocket` and `control`.
    public static func configText(
        name: String, command: [String], release: String, workers: Int, directory: String, extraApp: String, sections: String,
        controlSocket: String, control: String
    ) -> String {
        let quoted = command.map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            [app]
            name = "\(name)"
            command = [\(quoted)]
            directory = "\(release)"
            workers = \(workers)
            runtime_directory = "\(directory)/run"
            state_directory = "\(directory)/state"
            \(extraApp)
            \(sections)
            [control]
            socket = "\(controlSocket)"
            \(control)
            """
    }

    /// The `[deploy] stability_window` of test configs that do not set one: every deploy waits
    /// it twice (canary, last slot), so it makes up much of a chain's length (the integration
    /// chain alone: 93 s at 500 ms, 82 s at 200 ms). A test whose workers crash some time after
    /// READY sets the window that time must fall in.
    public static let testStabilityWindow = "200ms"

    /// Writes a config from `sections` (TOML after the [app] basics) and starts baton.
    /// - Parameters:
    ///   - workers: `app.workers`.
    ///   - command: argv; defaults to the demo worker.
    ///   - extraApp: more `[app]` lines.
    ///   - sections: more TOML after `[app]` (defaults: notify readiness, listen on 127.0.0.1:0).
    ///   - environment: extra environment for baton (e.g. NOTIFY_SOCKET).
    ///   - waitReady: wait for "all N workers ready".
    public init(
        workers: Int = 2, command: [String]? = nil, extraApp: String = "", sections: String? = nil,
        environment: [String: String] = [:], waitReady: Bool = true, tag: String = "h", controlGroup: String? = nil, readGroup: String? = nil,
        journalStream: Bool = false, beforeStart: (String) -> Void = { _ in }, reuse: String? = nil,
        wrapper: [String] = []
    ) throws {
        directory = reuse ?? TestPaths.temporaryDirectory(tag)
        configPath = directory + "/baton.toml"
        controlSocket = directory + "/control.sock"
        releaseDirectory = directory + "/releases/r1"
        _ = mkdir(directory + "/releases", 0o755)
        _ = mkdir(releaseDirectory, 0o755)
        let argv = command ?? [TestPaths.executable("baton-demo-worker")]
        var rest = sections ?? Self.defaultSections
        // Deploys in tests wait a shorter stability window than the 2 s default, unless the
        // test sets one: every deploy waits it twice (canary, last slot).
        if !rest.contains("stability_window") {
            let window = "stability_window = \"\(Self.testStabilityWindow)\""
            rest = rest.contains("[deploy]") ? rest.replacing("[deploy]", with: "[deploy]\n" + window, maxReplacements: 1) : rest + "\n[deploy]\n" + window
        }
        let text = Self.configText(
            name: "test", command: argv, release: releaseDirectory, workers: workers, directory: directory, extraApp: extraApp,
            sections: rest, controlSocket: controlSocket,
            control: [controlGroup.map { "group = \"\($0)\"" }, readGroup.map { "read_group = \"\($0)\"" }].compactMap { $0 }.joined(separator: "\n"))
        TestPaths.write(configPath, text)
        beforeStart(directory)
        process = try TestProcess(
            wrapper + [TestPaths.executable("baton"), "serve", "--config", configPath],
            environment: TestPaths.cleanEnvironment(adding: environment), journalStream: journalStream)
        if let line = process.waitForLine(containing: "listening", timeout: .seconds(20)),
            let range = line.range(of: "127.0.0.1:")
        {
            port = UInt16(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        if waitReady {
            guard process.waitForLine(containing: "all \(workers) workers ready", timeout: .seconds(60)) != nil else {
                let log = process.stderrLines.suffix(30).joined(separator: "\n")
                process.stop()
                // No stop() follows a harness that did not start: its folder goes here.
                if reuse == nil { TestPaths.remove(directory) }
                throw HarnessError("baton did not become ready:\n\(log)")
            }
        }
    }

    /// Runs the `baton` CLI with `args` (plus `--socket` for client verbs when `socket`).
    public func cli(_ args: [String], socket: Bool = true, timeout: Duration = .seconds(120)) throws -> CommandResult {
        // --socket right after the verb: `--command` takes the rest of the line.
        let full = [TestPaths.executable("baton")] + (socket && !args.isEmpty ? [args[0], "--socket", controlSocket] + args.dropFirst() : args)
        return try TestProcess.run(full, timeout: timeout)
    }

    /// `baton status --json`, decoded.
    public func status() throws -> StatusReport {
        let result = try cli(["status", "--json"])
        guard result.code == 0 else { throw HarnessError("status failed (\(result.code)): \(result.stderr)") }
        return try JSONDecoder().decode(StatusReport.self, from: Data(result.stdout.utf8))
    }

    /// Polls `baton status --json` every 0.1 s (bounded) until `done` holds; nil when it never did.
    public func waitForStatus(timeout: Duration = .seconds(30), _ done: (StatusReport) -> Bool) -> StatusReport? {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            if let status = try? status(), done(status) { return status }
            pause(0.1)
        }
        return nil
    }

    /// Sends raw bytes to the control socket and returns the reply line; with `halfClose`, shuts
    /// the writing half after them (as a client that sends its request and waits).
    public func rawControl(_ bytes: [UInt8], readTimeout: Duration = .seconds(10), halfClose: Bool = false) -> String? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard Sockets.connectUnix(fd, controlSocket) == 0 else { return nil }
        var tv = timeval(tv_sec: Int(readTimeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if halfClose { shutdown(fd, Int32(SHUT_WR)) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !reply.contains(0x0A) {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        return reply.isEmpty ? nil : String(decoding: reply, as: UTF8.self)
    }

    /// Stops baton (SIGTERM) and removes the temp directory (unless
    /// `keepDirectory`, to start another baton on the same state); returns
    /// baton's exit code.
    @discardableResult
    public func stop(keepDirectory: Bool = false) -> Int32 {
        let code = process.stop(timeout: .seconds(30))
        if !keepDirectory { TestPaths.remove(directory) }
        return code
    }

    /// The `[metrics]` endpoint's port, from baton's "metrics on 127.0.0.1:PORT/metrics" line
    /// (nil when it did not log one within `timeout`).
    public func metricsPort(timeout: Duration = .seconds(10)) -> UInt16? {
        guard let line = process.waitForLine(containing: "metrics on 127.0.0.1:", timeout: timeout),
            let range = line.range(of: "127.0.0.1:")
        else { return nil }
        return UInt16(line[range.upperBound...].prefix { $0.isNumber })
    }

    /// Creates another release folder next to the first; returns its path.
    public func makeRelease(_ name: String) -> String {
        let path = directory + "/releases/" + name
        _ = mkdir(path, 0o755)
        return path
    }

    /// Starts `baton deploy ...` (or any client verb) without waiting for it.
    public func startCLI(_ args: [String]) throws -> TestProcess {
        try TestProcess([TestPaths.executable("baton"), args[0], "--socket", controlSocket] + args.dropFirst())
    }
}

/// A harness failure with context.
public struct HarnessError: Error, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    /// Creates an error.
    public init(_ description: String) { self.description = description }
}
