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
        guard let text = ProcFS.read(path) else {
            throw ConfigError(path: path, message: "cannot read: \(String(cString: strerror(errno)))")
        }
        let config = try ConfigParserProcess.parse(text, path: path)
        if hostChecks { try ConfigHostCheck.check(config, text: text) }
        return config
    }
}
