import ArgumentParser
import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc

struct Preflight: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that the next deploy fits in memory: one verdict with the figures and the limit that binds.",
        discussion: """
            Exit 0: it fits. 1: it does not (with --roll-ahead: not even after restarting the most bloated workers). \
            With --roll-ahead, workers with the largest memory growth since boot are replaced one at a time, \
            zero downtime, until the plan fits.
            """)

    @OptionGroup var location: DaemonLocation

    @Option(help: "The release about to be deployed.")
    var release: String?

    @Option(help: "Memory the CI's own tooling needs on the host, e.g. 512MiB.")
    var need: String?

    @Flag(help: "Restart the most bloated workers (zero downtime) until the deploy fits.")
    var rollAhead = false

    @Flag(help: "One JSON object per line.")
    var json = false

    func validate() throws {
        if let need, Units.parseBoundedSize(need) == nil {
            throw ValidationError("--need expects a size like \"512MiB\", at most 1 PiB, got \"\(ControlProtocol.printable(need))\"")
        }
    }

    func run() throws {
        var client = try ControlClient(path: try location.socketPath(), timeout: nil)
        defer { client.close() }
        try client.send(ControlRequest(cmd: "preflight", preflight: PreflightOptions(release: release, need: need, rollAhead: rollAhead ? true : nil)))
        try followOperation(&client, json: json)
    }
}
