/// Checks on a config's raw bytes that run before any TOML parser sees them.
///
/// The TOML parser reads a C string, so a NUL byte would silently end the document there; a
/// config larger than ``maxBytes`` is refused rather than parsed (no real config comes near),
/// and so is text that is not valid UTF-8.
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
        // TOML is UTF-8; decoding would turn a bad sequence into U+FFFD without a word.
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        line = 1
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): if scalar == "\n" { line += 1 }
            case .emptyInput: return nil
            case .error: return ConfigError(path: path, line: line, message: "is not valid UTF-8 text (TOML is UTF-8)")
            }
        }
    }

    /// The line of the first `\u0000` or `\U00000000` escape outside a comment line: TOML allows
    /// it in a basic string, and the parser hands such a string over cut at the NUL (a worker's
    /// `A = "a\u0000b"` became `A=a`). An escaped backslash before it (`\\u0000`) is text.
    public static func nulEscapeLine(_ bytes: some Collection<UInt8>) -> Int? {
        let backslash = UInt8(ascii: "\\")
        for (index, text) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            let line = Array(text)
            if line.first(where: { $0 != 0x20 && $0 != 0x09 }) == UInt8(ascii: "#") { continue }
            var run = 0  // backslashes in a row before this byte
            for (i, byte) in line.enumerated() {
                if byte == backslash {
                    run += 1
                    continue
                }
                defer { run = 0 }
                guard run % 2 == 1 else { continue }
                let rest = line[i...]
                if rest.starts(with: Array("u0000".utf8)) || rest.starts(with: Array("U00000000".utf8)) { return index + 1 }
            }
        }
        return nil
    }
}
