import ArgumentParser
import BatonCore
import BatonSystem
import Glibc

/// `baton __parse-config PATH` (hidden): the child ``ConfigParserProcess`` runs. Reads the
/// config text from fd 3, parses and validates it, and writes `ok` with the config as JSON
/// (exit 0) or the one-line error (exit 2) to stdout. If the TOML parser aborts, only this
/// process dies.
struct ParseConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: ConfigParserProcess.subcommand, abstract: "Parse a config read from fd 3 (internal).",
        shouldDisplay: false)

    @Argument(help: "The config's path, for messages.")
    var path: String

    func run() throws {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while bytes.count <= ConfigPrecheck.maxBytes {
            let n = buffer.withUnsafeMutableBytes { read(ConfigParserProcess.textFD, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        do {
            print(ConfigParserProcess.resultLine(try BatonConfig.parse(String(decoding: bytes, as: UTF8.self), path: path)))
        } catch {
            print(error.description)
            throw BatonExit(code: BatonExitCode.usage, message: nil)
        }
    }
}
