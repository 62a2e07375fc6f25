import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "systemd": baton under a real systemd 252 (the sandboxed user manager of
/// `scripts/systemd-sandbox`, socket unit + service from `baton units`), with
/// concurrent keep-alive curl clients on the unix socket, then `systemctl restart`,
/// `baton upgrade` and `systemctl reload` one after another. For each: failed and refused
/// requests and the latency gap (largest latency) against a steady window. Runs the
/// `bench` scenario of `scripts/systemd-load-driver.sh` and reads its RESULT lines.
struct SystemdScenario {
    let options: BenchOptions

    /// The triggers, in the order the driver runs them.
    static let triggers = ["restart", "upgrade", "reload"]

    struct Trigger: Codable {
        var trigger: String
        var exitCode: Int
        /// Until the command (systemctl restart, baton upgrade, systemctl reload) returned.
        var durationMilliseconds: Int
        /// Until every worker was ready again.
        var readyMilliseconds: Int
        var sameMainPID: Bool
        var load: LoadWindow
    }

    struct Result: Codable {
        var scenario = "systemd"
        /// systemd's version (the sandboxed user manager's).
        var systemd: String
        var workers = 4
        var connections: Int
        var bootDelaySeconds: Double
        var steadySeconds: Double
        var steady: LoadWindow
        var triggers: [Trigger]
    }

    func run() throws {
        guard SystemdSandbox.isAvailable else {
            print("systemd: skipped (\(SystemdSandbox.unavailableReason ?? "unavailable"))")
            return
        }
        // curl clients are processes: a few are enough to keep every worker busy.
        let connections = min(options.connections, 8)
        let steady = min(options.steadySeconds, 3)
        let run = try SystemdSandbox.run(
            "bench", driver: .load, arguments: [String(connections), String(options.bootDelay), String(steady)])
        guard run.code == 0 else { throw BenchError("the systemd driver exited \(run.code)\n\(run.transcript)") }
        let triggers = Self.triggers.map { name in
            Trigger(
                trigger: name, exitCode: run.int("\(name)_rc") ?? -1, durationMilliseconds: run.int("\(name)_ms") ?? -1,
                readyMilliseconds: run.int("\(name)_ready_ms") ?? -1,
                sameMainPID: run["\(name)_same_main_pid"] == "yes", load: run.window(name))
        }
        let result = Result(
            systemd: run["systemd_version"], connections: connections, bootDelaySeconds: options.bootDelay, steadySeconds: steady, steady: run.window("steady"),
            triggers: triggers)
        printTable(result)
        try write(result)
    }

    private func printTable(_ r: Result) {
        print("")
        print(
            "systemd \(r.systemd) (sandboxed user manager): \(r.workers) workers (boot \(fixed(r.bootDelaySeconds))s each), \(r.connections) keep-alive curl clients "
                + "on the socket unit's unix socket; each window = \(fixed(r.steadySeconds))s steady + the trigger + \(fixed(r.steadySeconds))s")
        print("| trigger | exit | returned after ms | all ready after ms | same MainPID | requests ok | refused | failed | p50 ms | max ms (gap) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        let s = r.steady
        print("| (steady) | | | | | \(s.ok) | \(s.refused) | \(s.failed) | \(fixed(s.p50Milliseconds, 1)) | \(fixed(s.maxMilliseconds, 1)) |")
        for t in r.triggers {
            let l = t.load
            print(
                "| \(t.trigger) | \(t.exitCode) | \(t.durationMilliseconds) | \(t.readyMilliseconds) | \(t.sameMainPID ? "yes" : "no") | \(l.ok) | \(l.refused) | "
                    + "\(l.failed)\(l.failures.isEmpty ? "" : " (\(l.failures))") | \(fixed(l.p50Milliseconds, 1)) | \(fixed(l.maxMilliseconds, 1)) |")
        }
    }

    private func write(_ r: Result) throws {
        try Filesystem.makeDirectory(options.outputDirectory, mode: 0o755)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let path = options.outputDirectory + "/systemd.json"
        TestPaths.write(path, String(decoding: try encoder.encode(r), as: UTF8.self) + "\n")
        print("wrote \(path)")
    }
}
