import ArgumentParser
import BatonCore
import BatonDaemon
import BatonSystem
import FoundationEssentials
import Glibc

struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Re-execute the daemon in place (same PID, workers keep serving), after checking the new binary.",
        discussion: """
            The daemon opens BINARY once (a regular file owned by root, or by baton's own uid when baton is not root, \
            not writable by group or others, in a directory others cannot write to) and runs it as \
            `BINARY upgrade --check --handshake-fd 3 --nonce N --config FILE`. It execs that same file only if the check \
            answered `baton-upgrade-protocol 1 ready N` on fd 3 and exited 0; anything else leaves the running daemon \
            untouched (exit 1; exit 2 for a binary refused before it runs). Only root or baton's own uid may ask.
            """)

    @OptionGroup var location: DaemonLocationOptional

    @Option(help: "The binary to run (default: the daemon's own executable path).")
    var binary: String?

    // .unconditional: "-1s" is this option's (refused) value, not an unknown flag.
    @Option(parsing: .unconditional, help: "How long the new binary's check may take, e.g. \"10s\" (default 30s).")
    var timeout: String?

    @Flag(help: "Check mode (what the daemon runs): load the config and state, answer the handshake, exit 0 if usable.")
    var check = false

    @Option(name: .customLong("handshake-fd"), help: .hidden)
    var handshakeFD: Int32?

    @Option(help: .hidden)
    var nonce: String?

    func validate() throws {
        // Before any connection: a bad value is a usage error (exit 2), not an unreachable daemon.
        if let timeout, let problem = Units.timeoutProblem(timeout, option: "--timeout") { throw ValidationError(problem) }
    }

    func run() throws {
        if check {
            do {
                try checkUsable()
            } catch let exit as BatonExit {
                // The daemon shows this reason in its refusal (not only "exit code 2").
                if let fd = handshakeFD, let message = exit.message {
                    writeAll(fd, Array(UpgradeHandshake.refusalAnswer(reason: message).utf8))
                }
                throw exit
            }
            // Only now, with the config and the state loaded: the daemon execs this
            // binary on this line alone (an exit code proves nothing).
            if let fd = handshakeFD {
                guard let nonce else { throw BatonExit(code: BatonExitCode.usage, message: "--handshake-fd needs --nonce") }
                writeAll(fd, Array(UpgradeHandshake.answer(nonce: nonce).utf8))
                close(fd)
            }
            // Said to a person running the check; to the daemon the handshake said it (a soak
            // audit: the line landed in baton's log bare, with no time or level).
            if handshakeFD == nil { print("upgrade check: ok") }
            return
        }
        var client = try ControlClient(try location.resolved().endpoint(), timeout: .seconds(120))
        defer { client.close() }
        try client.send(ControlRequest(cmd: "upgrade", deploy: timeout.map { DeployOptions(timeout: $0) }, binary: binary))
        try followOperation(&client, json: false)
    }

    /// Check mode: the config loads (with the host checks) and the state directory's
    /// `release.json`, if there is one, is a release state this build can read.
    private func checkUsable() throws {
        guard let path = location.config else { return }
        let config = try loadConfig(path, hostChecks: true)
        let state = Supervisor.stateDirectory(for: config) + "/release.json"
        if let text = ProcFS.read(state), (try? JSONDecoder().decode(ReleaseState.self, from: Data(text.utf8))) == nil {
            throw BatonExit(code: BatonExitCode.failure, message: "\(state): not a release state this baton can read")
        }
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
        var location = DaemonLocation()
        location.app = app
        location.config = config
        location.socket = socket
        try location.validate()
        return location
    }
}
