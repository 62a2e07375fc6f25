/// Checks on a config's raw bytes that run before any TOML parser sees them.
///
/// The TOML parser reads a C string, so a NUL byte would silently end the document there; a
/// config larger than ``maxBytes`` is refused rather than parsed (no real config comes near);
/// ``decode(_:path:)`` turns a file's bytes into text, refusing what is not UTF-8.
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

    /// A file's bytes as text (a config, an environment file): both are UTF-8, and decoding
    /// would turn a bad sequence into U+FFFD without a word, so one is an error with its line.
    public static func decode(_ bytes: [UInt8], path: String) throws(ConfigError) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        scan: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): if scalar == "\n" { line += 1 }
            case .emptyInput, .error: break scan
            }
        }
        throw ConfigError(path: path, line: line, message: "is not valid UTF-8 text")
    }

    /// Where ``nulEscapeLine(_:)`` is in the text.
    private enum EscapeContext { case code, comment, basic, multilineBasic, literal, multilineLiteral }

    /// The line of the first `\u0000` or `\U00000000` escape in a basic string (`"..."` or
    /// `"""..."""`): TOML allows it, and the parser hands such a string over cut at the NUL (a
    /// worker's `A = "a\u0000b"` became `A=a`). A literal string (`'...'`, `'''...'''`) has
    /// no escapes and a comment is text, so the same characters there are not one; neither is
    /// an escaped backslash before them (`\\u0000`).
    public static func nulEscapeLine(_ bytes: some Collection<UInt8>) -> Int? {
        let text = Array(bytes)
        let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
        func starts(_ pattern: String, at i: Int) -> Bool {
            let p = Array(pattern.utf8)
            return i + p.count <= text.count && Array(text[i..<(i + p.count)]) == p
        }
        var context = EscapeContext.code
        var line = 1
        var i = 0
        while i < text.count {
            let byte = text[i]
            if byte == 0x0A {
                line += 1
                // A comment and a one-line string end with the line.
                if context == .comment || context == .basic || context == .literal { context = .code }
                i += 1
                continue
            }
            switch context {
            case .code:
                if byte == UInt8(ascii: "#") {
                    context = .comment
                } else if starts("\"\"\"", at: i) {
                    context = .multilineBasic
                    i += 2
                } else if starts("'''", at: i) {
                    context = .multilineLiteral
                    i += 2
                } else if byte == quote {
                    context = .basic
                } else if byte == apostrophe {
                    context = .literal
                }
            case .comment:
                break
            case .literal:
                if byte == apostrophe { context = .code }
            case .multilineLiteral:
                if starts("'''", at: i) {
                    context = .code
                    i += 2
                }
            case .basic, .multilineBasic:
                if byte == backslash {
                    // An escape: `\\` is a backslash; `\u0000` and `\U00000000` are the NUL.
                    if starts("\\u0000", at: i) || starts("\\U00000000", at: i) { return line }
                    // Skip the escaped character, but not a line end (a line-ending backslash).
                    i += i + 1 < text.count && text[i + 1] != 0x0A ? 2 : 1
                    continue
                }
                if context == .basic, byte == quote {
                    context = .code
                } else if context == .multilineBasic, starts("\"\"\"", at: i) {
                    context = .code
                    i += 2
                }
            }
            i += 1
        }
        return nil
    }
}
