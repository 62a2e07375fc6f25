import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc

/// Runs a scenario of `scripts/systemd-test-driver.sh` or `scripts/systemd-load-driver.sh`
/// inside `scripts/systemd-sandbox` (a private systemd user manager in its own cgroup,
/// pid and mount namespaces) and collects what it reports; used by `Tests/BatonSystemdTests`
/// and `baton-bench systemd`. Never starts systemd any other way: outside its own cgroup
/// namespace it would adopt every process on the machine.
public enum SystemdSandbox {
    /// `$BATON_SYSTEMD_SANDBOX`, else the package's own `scripts/systemd-sandbox`.
    public static let script: String = {
        if let env = getenv("BATON_SYSTEMD_SANDBOX"), env.pointee != 0 { return String(cString: env) }
        return TestPaths.packageRoot + "/scripts/systemd-sandbox"
    }()

    /// The drivers the sandbox runs: unit, activation and reload scenarios, and the load,
    /// crash and upgrade ones.
    public enum Driver: String, Sendable {
        /// `scripts/systemd-test-driver.sh`.
        case units = "systemd-test-driver.sh"
        /// `scripts/systemd-load-driver.sh`.
        case load = "systemd-load-driver.sh"
        /// `scripts/systemd-preflight-driver.sh`.
        case preflight = "systemd-preflight-driver.sh"

        /// The script's path.
        public var path: String { TestPaths.packageRoot + "/scripts/" + rawValue }
    }

    /// The shipped unit templates.
    public static let unitsDirectory = TestPaths.packageRoot + "/systemd"

    /// Why the systemd tests cannot run here, or nil when they can.
    public static let unavailableReason: String? = {
        if geteuid() != 0 { return "not root (the sandbox needs CAP_SYS_ADMIN for its namespaces and cgroup)" }
        if access(script, R_OK) != 0 { return "no sandbox script at \(script) (set BATON_SYSTEMD_SANDBOX)" }
        // Only checks the binary exists: the manager is started by systemd-sandbox alone.
        if access("/lib/systemd/systemd", X_OK) != 0 { return "systemd is not installed (apt-get install -y systemd); systemd-sandbox needs it" }
        for tool in ["/usr/bin/unshare", "/usr/bin/curl", "/usr/bin/timeout"] where access(tool, X_OK) != 0 {
            return "\(tool) is missing"
        }
        return nil
    }()

    /// Whether the systemd tests run; prints why not, once.
    public static let isAvailable: Bool = {
        guard let reason = unavailableReason else { return true }
        print("BatonSystemdTests: skipping the tests on a real systemd: \(reason)")
        return false
    }()

    /// The driver's own bound (inside the sandbox); the test waits a little longer.
    public static let driverTimeoutSeconds = 240

    /// Runs one scenario of a driver in a fresh sandbox, with a fresh work directory;
    /// `arguments` follow the driver's five.
    public static func run(_ scenario: String, driver: Driver = .units, arguments: [String] = []) throws -> DriverRun {
        let work = TestPaths.temporaryDirectory("sd")
        defer { TestPaths.remove(work) }
        let argv =
            [
                "/bin/bash", script, "--",
                // The driver is bounded inside the sandbox, so the sandbox always gets to clean up
                // its cgroup (a SIGKILL of the sandbox script would leave the manager running).
                "timeout", "-k", "10", String(driverTimeoutSeconds),
                "/bin/bash", driver.path, scenario, TestPaths.executable("baton"), TestPaths.executable("baton-demo-worker"),
                work, unitsDirectory,
            ] + arguments
        let process = try TestProcess(argv, environment: TestPaths.cleanEnvironment())
        let start = monotonicNow()
        let code = process.wait(timeout: .seconds(driverTimeoutSeconds + 40)) ?? process.stop(timeout: .seconds(60))
        let run = DriverRun(
            scenario: scenario, code: code, stdout: process.stdout, stderr: process.stderrLines.joined(separator: "\n"),
            elapsed: monotonicNow() - start)
        print("systemd scenario \(scenario): exit \(code) in \(Units.formatElapsed(run.elapsed))")
        return run
    }
}

/// What one driver run reported: `RESULT key=value` lines, its exit code and its output
/// (stderr ends with the sandbox manager's log: baton's and the workers' lines).
public struct DriverRun {
    /// The scenario run.
    public let scenario: String
    /// The sandbox's exit code (the driver's: 0 = the scenario ran).
    public let code: Int32
    /// Everything on stdout.
    public let stdout: String
    /// Everything on stderr.
    public let stderr: String
    /// How long the whole sandbox run took.
    public let elapsed: Duration
    /// key → value of the RESULT lines.
    public let results: [String: String]

    public init(scenario: String, code: Int32, stdout: String, stderr: String, elapsed: Duration) {
        self.scenario = scenario
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed
        var results: [String: String] = [:]
        for line in stdout.split(separator: "\n") where line.hasPrefix("RESULT ") {
            let entry = line.dropFirst(7)
            let key = String(entry.prefix { $0 != "=" })
            results[key] = String(entry.drop { $0 != "=" }.dropFirst())
        }
        self.results = results
    }

    /// A reported value ("" when missing, so a comparison fails with the transcript).
    public subscript(key: String) -> String { results[key] ?? "" }

    /// A reported integer.
    public func int(_ key: String) -> Int? { Int(self[key]) }

    /// A `baton status --json` the driver reported.
    public func status(_ key: String) throws -> StatusReport { try json(StatusReport.self, key) }

    /// A reported JSON value (`baton status --json`, `baton history --json`).
    public func json<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(self[key].utf8))
        } catch {
            throw HarnessError("\(key) is not a \(T.self) (\(error)): \(self[key])\n\(transcript)")
        }
    }

    /// `ok failed` of the driver's load loop.
    public var load: (ok: Int, failed: Int) {
        let parts = self["load"].split(separator: " ").compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (0, -1)
    }

    /// What the driver's concurrent keep-alive clients (`kload_stop PREFIX`) saw.
    public func window(_ prefix: String) -> LoadWindow {
        func number(_ key: String) -> Double { Double(self["\(prefix)_\(key)"]) ?? -1 }
        return LoadWindow(
            connections: Int(number("connections")), ok: Int(number("ok")), refused: Int(number("refused")), failed: Int(number("failed")),
            failures: String(self["\(prefix)_failures"].reversed().drop { $0 == " " }.reversed()), p50Milliseconds: number("p50_ms"),
            maxMilliseconds: number("max_ms"), failureLines: self["\(prefix)_failure_lines"])
    }

    /// The whole run, for failure messages.
    public var transcript: String {
        "driver \(scenario) exited \(code)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)"
    }
}

/// One load window of a driver run: concurrent keep-alive curl clients against the app's
/// socket (counts are -1 when the driver did not report them).
public struct LoadWindow: Codable, Sendable, CustomStringConvertible {
    /// Concurrent keep-alive clients.
    public var connections: Int
    /// Requests answered 2xx.
    public var ok: Int
    /// Connections refused (curl exit 7: nothing listening on the socket).
    public var refused: Int
    /// Other failed requests: reset, empty reply, timeout, non-2xx.
    public var failed: Int
    /// The failures by kind (`exit52:1 http503:2`).
    public var failures: String
    /// Median latency of the answered requests.
    public var p50Milliseconds: Double
    /// Largest latency of an answered request: the gap clients saw.
    public var maxMilliseconds: Double
    /// The first failures as curl reported them (`code seconds exit message;`).
    public var failureLines: String

    /// One line.
    public var description: String {
        "\(ok) ok, \(refused) refused, \(failed) failed\(failures.isEmpty ? "" : " (\(failures))") on \(connections) connections; "
            + "latency p50 \(p50Milliseconds) ms, max \(maxMilliseconds) ms\(failureLines.isEmpty ? "" : "; first failures: \(failureLines)")"
    }
}
