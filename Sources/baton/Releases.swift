import ArgumentParser
import BatonCore
import BatonSystem
import FoundationEssentials

struct Releases: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "releases",
        abstract: "List the release folders, newest first, with what retention does with each.",
        discussion: """
            Marks: current and previous (never removed), in-use (a worker runs there), kept (among the newest \
            [deploy] keep_releases), prune (the next prune removes it). Retention is on only with \
            [deploy] releases_directory set; baton then prunes after every successful deploy or rollback.
            """)

    @OptionGroup var location: DaemonLocation

    @Flag(help: "Remove the folders marked prune now.")
    var prune = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var client = try ControlClient(try location.endpoint(), timeout: prune ? nil : .seconds(10))
        defer { client.close() }
        try client.send(ControlRequest(cmd: prune ? "prune-releases" : "releases"))
        var answer: (report: ReleasesReport, message: String?)?
        while answer == nil {
            switch try client.next() {
            case .progress(let line):
                if !json { print(line) }
            case .succeeded(let success):
                guard case .releases(let report)? = success.payload else {
                    throw BatonExit(code: BatonExitCode.failure, message: "releases failed")
                }
                answer = (report, success.message)
            case .failed(let failure):
                throw BatonExit(code: failure.code ?? BatonExitCode.failure, message: failure.error)
            }
        }
        guard let answer else { return }
        let (report, message) = answer
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        for path in report.removed ?? [] { print("removed \(path)") }
        print(report.table(now: wallClockNow()))
        if let message { print(message) }
    }
}
