import ArgumentParser
import BatonCore
import BatonSystem
import Glibc

struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-execute the daemon in place (same PID, workers keep serving), after checking the new binary.",
        discussion: """
            The daemon first runs `BINARY upgrade --check --config FILE`; only if it exits 0 does it execve. \
            A binary that fails the check leaves the running daemon untouched (exit 1).
            """)

    @OptionGroup var location: DaemonLocationOptional

    @Option(help: "The binary to run (default: the daemon's own executable path).")
    var binary: String?

    @Flag(help: "Check mode (what the daemon runs): load the config and state, exit 0 if usable.")
    var check = false

    func run() throws {
        if check {
            if let path = location.config {
                let config = try loadConfig(path, hostChecks: true)
                let state = config.app.stateDirectory ?? "/var/lib/baton/\(config.app.name)"
                if let text = ProcFS.read(state + "/release.json"), text.isEmpty {
                    throw BatonExit(code: BatonExitCode.failure, message: "\(state)/release.json is empty")
                }
            }
            print("upgrade check: ok")
            return
        }
        let socket = try location.resolved().socketPath()
        var client = try ControlClient(path: socket, timeout: .seconds(120))
        defer { client.close() }
        try client.send(ControlRequest(cmd: "upgrade", binary: binary))
        try followOperation(&client, json: false)
    }
}

/// Like `DaemonLocation`, but optional (`upgrade --check` needs no daemon).
struct DaemonLocationOptional: ParsableArguments {
    @Option(help: "The app name (control socket /run/baton/NAME/control.sock).")
    var app: String?

    @Option(help: "The app's config file (its [control] socket).")
    var config: String?

    @Option(help: "The control socket path.")
    var socket: String?

    func resolved() throws -> DaemonLocation {
        var args: [String] = []
        if let app { args += ["--app", app] }
        if let config { args += ["--config", config] }
        if let socket { args += ["--socket", socket] }
        return try DaemonLocation.parse(args)
    }
}
