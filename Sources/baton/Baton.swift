import ArgumentParser
import BatonCore
import FoundationEssentials

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

/// Whether the command line asks for JSON (`--json` before `--command`, whose arguments are
/// the app's).
var asksForJSON: Bool {
    CommandLine.arguments.dropFirst().prefix { $0 != "--command" && $0 != "--" }.contains("--json")
}

/// With `--json`, the CLI's own error (no daemon reached, a usage error, a reply cut short) as
/// one reply line on stdout, as the daemon's failures are: a `jq` after `baton … --json` read
/// nothing where the daemon was not reached (left over from a CI-door audit). The line on
/// stderr stays.
func printJSONError(_ message: String, code: Int32) {
    try? printReplyLine(.failure(message, code: code))
}

/// One reply as a JSON line on stdout (`--json`), as the daemon sent it.
func printReplyLine(_ reply: ControlReply) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(reply), as: UTF8.self))
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
