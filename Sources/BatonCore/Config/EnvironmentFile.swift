/// The syntax of systemd's `EnvironmentFile=`, which `app.environment_file` uses, so one file
/// can serve both a unit and baton.
///
/// - `KEY=VALUE` lines; spaces around `=` are ignored.
/// - Blank lines and lines starting with `#` or `;` are ignored (a `#` later in a line is part
///   of the value; a comment line ending in a backslash goes on to the next line).
/// - A value is made of parts, as in systemd's parser: `'single quoted'` (literal),
///   `"double quoted"` (`\"`, `\\`, `\$` and `` \` `` stand for the character, a backslash
///   before anything else stays: `"a\nb"` is `a\nb`), both of which may span lines, and after
///   them the rest of the line unquoted; spaces between quoted parts are dropped
///   (`'a' "b"c` is `abc`; `"x" # c` is `x# c`, a names audit found).
/// - In unquoted text a backslash escapes the next character, and one at the end of a line
///   continues the value on the next line; spaces around it are trimmed.
/// - Where systemd 252 would skip a line with a warning in its journal, baton refuses the
///   file naming the line (a line without `=`, a name that is not `[A-Za-z_][A-Za-z0-9_]*`),
///   but for one: `export KEY=VALUE` sets KEY (a file a shell also sources), where systemd
///   ignores it.
public enum EnvironmentFile {
    /// Parses an environment file's text into its variables, in file order (a later duplicate
    /// wins when applied).
    ///
    /// - Throws: ``ConfigError`` with `path` and the offending line for a line without `=`, an
    ///   invalid variable name, an unterminated quote or text after a closing quote, and
    ///   for a NUL byte or more than 1 MiB of text (``ConfigPrecheck``).
    public static func parse(_ text: String, path: String) throws(ConfigError) -> [(String, String)] {
        // A NUL would silently cut a value short in the worker's environment block.
        if let error = ConfigPrecheck.check(text.utf8, path: path) { throw error }
        var parser = EnvironmentFileParser(characters: Array(text.unicodeScalars), path: path)
        return try parser.parse()
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`: a name both a shell and systemd accept.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(0x30...0x39).contains(first) else { return false }
        return name.utf8.allSatisfy { KeyPath.isBareKeyByte($0) && $0 != UInt8(ascii: "-") }
    }
}

/// The cursor behind ``EnvironmentFile/parse(_:path:)``.
struct EnvironmentFileParser {
    /// The text, as Unicode scalars: a CR and an LF are each a line end, as systemd's parser
    /// takes them (a re-audit: read as Characters, `\r\n` was one, and a backslash before it
    /// joined the next line into the value, or hid it in a comment, where systemd does not).
    let characters: [Unicode.Scalar]
    /// The file's path, for errors.
    let path: String
    /// The next character to read.
    var position = 0
    /// The 1-based line of `position`.
    var line = 1

    /// Reads every assignment.
    mutating func parse() throws(ConfigError) -> [(String, String)] {
        var variables: [(String, String)] = []
        while let character = peek() {
            if character == " " || character == "\t" {
                position += 1
            } else if character.isLineEnd {
                advanceLine()
            } else if character == "#" || character == ";" {
                skipComment()
            } else {
                variables.append(try assignment())
            }
        }
        return variables
    }

    /// Reads `[export ]KEY=VALUE` starting at a non-blank character.
    private mutating func assignment() throws(ConfigError) -> (String, String) {
        let startLine = line
        var key = ""
        while let character = peek(), character != "=", !character.isLineEnd {
            key.unicodeScalars.append(character)
            position += 1
        }
        guard peek() == "=" else {
            throw error(startLine, "expected KEY=VALUE, got \(KeyPath.quote(trimmed(key)))")
        }
        position += 1
        key = trimmed(key)
        for prefix in ["export ", "export\t"] where key.hasPrefix(prefix) {
            key = trimmed(String(key.dropFirst(prefix.count)))
        }
        guard EnvironmentFile.isValidName(key) else {
            throw error(startLine, "invalid variable name \(KeyPath.quote(key))")
        }
        // Quoted parts, spaces between them dropped, then the rest of the line unquoted.
        var value = ""
        while true {
            while peek() == " " || peek() == "\t" { position += 1 }
            switch peek() {
            case "\"":
                value += try quoted(startLine: startLine, double: true)
            case "'":
                value += try quoted(startLine: startLine, double: false)
            default:
                value += unquoted()
                if peek() != nil { advanceLine() }
                return (key, value)
            }
        }
    }

    /// Reads a quoted part of a value, up to its closing quote.
    private mutating func quoted(startLine: Int, double: Bool) throws(ConfigError) -> String {
        let quote: Unicode.Scalar = double ? "\"" : "'"
        position += 1
        var value = ""
        while true {
            guard let character = peek() else {
                throw error(startLine, "unterminated \(double ? "double" : "single")-quoted value")
            }
            if character == quote {
                position += 1
                break
            }
            if character.isLineEnd {
                advanceLine()
                value.unicodeScalars.append(character)
                continue
            }
            position += 1
            guard double, character == "\\", let escaped = peek() else {
                value.unicodeScalars.append(character)
                continue
            }
            if escaped == "\n" {
                advanceLine()  // A line continuation: neither the backslash nor the newline stays.
                continue
            }
            if escaped == "\r" {
                // In double quotes only LF continues a line, as in systemd 252 (a re-audit):
                // the backslash stays, and the CR with it.
                value.unicodeScalars.append("\\")
                continue
            }
            position += 1
            switch escaped {
            case "\"", "\\", "$", "`": value.unicodeScalars.append(escaped)
            default: value += "\\\(escaped)"
            }
        }
        return value
    }

    /// Reads an unquoted value up to the end of its (possibly continued) line.
    private mutating func unquoted() -> String {
        var value: [Unicode.Scalar] = []
        // Trailing spaces are trimmed, but not ones written escaped (`\ `).
        var keptLength = 0
        while let character = peek(), !character.isLineEnd {
            position += 1
            if character == "\\" {
                guard let escaped = peek() else { break }
                if escaped.isLineEnd {
                    advanceLine()
                    // Spaces before the backslash stay (systemd's parser: a re-audit, `B=two \`).
                    keptLength = value.count
                    continue
                }
                position += 1
                value.append(escaped)
                keptLength = value.count
                continue
            }
            value.append(character)
            if character != " " && character != "\t" { keptLength = value.count }
        }
        return String(String.UnicodeScalarView(value[..<keptLength]))
    }

    /// A ``ConfigError`` at `line` of this file.
    private func error(_ line: Int, _ message: String) -> ConfigError {
        ConfigError(path: path, line: line, message: message)
    }

    /// Skips a comment to the start of the next line; a backslash before its end goes on to
    /// the line after (systemd's COMMENT_ESCAPE).
    private mutating func skipComment() {
        while let character = peek(), !character.isLineEnd {
            position += 1
            if character == "\\", let next = peek() {
                if next.isLineEnd { advanceLine() } else { position += 1 }
            }
        }
        if peek() != nil { advanceLine() }
    }

    /// Consumes a line end (CR LF counts as one line in messages).
    private mutating func advanceLine() {
        if !(characters[position] == "\n" && position > 0 && characters[position - 1] == "\r") { line += 1 }
        position += 1
    }

    /// The current character, if any.
    private func peek() -> Unicode.Scalar? {
        position < characters.count ? characters[position] : nil
    }

    /// `text` without surrounding spaces and tabs.
    private func trimmed(_ text: String) -> String {
        var slice = Substring(text)
        while slice.first == " " || slice.first == "\t" { slice.removeFirst() }
        while slice.last == " " || slice.last == "\t" { slice.removeLast() }
        return String(slice)
    }
}

extension Unicode.Scalar {
    /// LF or CR: systemd's NEWLINE.
    fileprivate var isLineEnd: Bool { self == "\n" || self == "\r" }
}
