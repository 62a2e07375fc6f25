import ArgumentParser

/// The stable exit codes of the CLI (README documents them).
enum BatonExitCode {
    /// Success.
    static let success: Int32 = 0
    /// The operation failed (reload failed, check said no).
    static let failure: Int32 = 1
    /// Usage or config error.
    static let usage: Int32 = 2
    /// Could not reach the daemon.
    static let unreachable: Int32 = 3
    /// Timed out.
    static let timeout: Int32 = 4
}

/// Thrown to end the process with a code and an optional one-line message.
struct BatonExit: Error {
    var code: Int32
    var message: String?
}

struct Baton: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton",
        abstract: "Zero-downtime deploys and worker supervision on systemd-activated sockets.",
        discussion: """
            Exit codes: 0 success, 1 the operation failed, 2 usage or config error, \
            3 could not reach the daemon, 4 timed out.
            """,
        version: "0.1.0",
        subcommands: [
            Serve.self, Demo.self, CheckConfig.self, Status.self, Reload.self, Deploy.self, Rollback.self, History.self, SystemdUnits.self, Upgrade.self,
            Preflight.self, Releases.self, ParseConfig.self,
        ]
    )
}
