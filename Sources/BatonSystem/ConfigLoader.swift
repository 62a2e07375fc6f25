import BatonCore
import Glibc

/// Reads a config file once and turns it into a ``BatonConfig`` without letting the text
/// reach code that can crash this process (see ``ConfigParserProcess``).
public enum ConfigLoader {
    /// Reads, parses and validates the config at `path`; with `hostChecks`, also checks it
    /// against this host (``ConfigHostCheck``).
    ///
    /// - Throws: ``ConfigError``, one line: `path: cannot read: ...`, the first problem with its
    ///   line, or `config parser crashed (signal N) on PATH: ...`.
    public static func load(_ path: String, hostChecks: Bool) throws(ConfigError) -> BatonConfig {
        let bytes: [UInt8]
        do {
            // A pipe (`check-config /dev/stdin`, `<(generate)`, a FIFO) gets as long as the parser.
            bytes = try RegularFile.read(path, maxBytes: ConfigPrecheck.maxBytes, pipeDeadline: ConfigParserProcess.defaultTimeout)
        } catch {
            throw ConfigError(path: path, message: error.problem)
        }
        if let error = ConfigPrecheck.check(bytes, path: path) { throw error }
        let text = try ConfigPrecheck.decode(bytes, path: path)
        let config = try ConfigParserProcess.parse(text, path: path)
        if hostChecks { try ConfigHostCheck.check(config, text: text) }
        return config
    }
}
