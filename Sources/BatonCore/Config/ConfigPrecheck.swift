/// Checks on a config's raw bytes that run before any TOML parser sees them.
///
/// The TOML parser reads a C string, so a NUL byte would silently end the document there; a
/// config larger than ``maxBytes`` is refused rather than parsed (no real config comes near).
public enum ConfigPrecheck {
    /// The largest config accepted, 1 MiB.
    public static let maxBytes = 1 << 20

    /// The first problem with `bytes` as a config's text, or nil when the parser may see it.
    ///
    /// - Parameters:
    ///   - bytes: The file's contents.
    ///   - path: The file, for the message.
    public static func check(_ bytes: some Collection<UInt8>, path: String) -> ConfigError? {
        guard bytes.count <= maxBytes else {
            return ConfigError(path: path, message: "is larger than 1 MiB (\(bytes.count) bytes); a config is a small text file")
        }
        var line = 1
        for byte in bytes {
            if byte == 0 { return ConfigError(path: path, line: line, message: "contains a NUL byte (a config is text)") }
            if byte == 0x0A { line += 1 }
        }
        return nil
    }
}
