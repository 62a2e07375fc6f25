/// Where each key of a TOML document is, by line.
///
/// TOMLKit reports positions only for syntax errors, and its tables come back sorted by key, so
/// baton reads the raw text once more to find the line of every table header (`[app]`,
/// `[app.environment]`), key (`workers = 8`, dotted `a.b = 1`, quoted `"odd key" = 1`) and key
/// inside an inline table, and the order they appear in. Multi-line strings and arrays are
/// skipped.
///
/// It is built only for text TOMLKit has accepted, so it is lenient: anything it does not
/// understand ends the scan rather than producing an error.
struct KeyLineIndex: Sendable {
    /// The line and file-order position of each dotted key (see ``KeyPath/join(_:)``).
    private var entries: [String: (line: Int, order: Int)] = [:]

    /// Indexes `text`.
    init(_ text: String) {
        var scanner = TOMLLineScanner(bytes: Array(text.utf8))
        scanner.scanDocument()
        for (order, found) in scanner.found.enumerated() where entries[found.key] == nil {
            entries[found.key] = (found.line, order)
        }
    }

    /// The line of `path`, or failing that of its nearest indexed parent (a key inside a value
    /// the scan does not index, such as an array of inline tables); nil if none is indexed.
    func line(for path: [String]) -> Int? {
        var path = path
        while !path.isEmpty {
            if let entry = entries[KeyPath.join(path)] { return entry.line }
            path.removeLast()
        }
        return nil
    }

    /// The line of `path` itself, without falling back to a parent.
    func exactLine(for path: [String]) -> Int? {
        entries[KeyPath.join(path)]?.line
    }

    /// The position of `path` in file order, for sorting keys TOMLKit returns sorted by name.
    func order(of path: [String]) -> Int? {
        entries[KeyPath.join(path)]?.order
    }
}

/// How baton writes a key path in messages and index lookups.
enum KeyPath {
    /// Joins components with dots, quoting those that are not bare TOML keys:
    /// `["app", "environment", "A B"]` → `app.environment."A B"`.
    static func join(_ components: [String]) -> String {
        components.map(quoted).joined(separator: ".")
    }

    /// A component as TOML would need it written.
    static func quoted(_ component: String) -> String {
        let bare = !component.isEmpty && component.utf8.allSatisfy(isBareKeyByte)
        guard !bare else { return component }
        return quote(component)
    }

    /// `text` in double quotes, escaped as in TOML, for messages.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            // TOML's escape: an ESC cleared the terminal `check-config` wrote to (a names audit).
            case _ where ControlProtocol.isHidden(scalar): out += ControlProtocol.unicodeEscape(scalar)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// `A-Z a-z 0-9 _ -`, the bytes of a bare key.
    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}

/// A recursive-descent walk over valid TOML that records where keys are.
struct TOMLLineScanner {
    /// The document's UTF-8 bytes.
    let bytes: [UInt8]
    /// The next byte to read.
    var position = 0
    /// The 1-based line of `position`.
    var line = 1
    /// Keys found, in file order.
    var found: [(key: String, line: Int)] = []
    /// How many arrays and inline tables enclose `position`.
    var depth = 0
    /// Deeper nesting ends the scan: TOML parsers refuse far less, and the walk recurses.
    static let maxDepth = 128

    /// Walks the whole document.
    mutating func scanDocument() {
        var table: [String] = []
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }  // A UTF-8 byte order mark.
        while true {
            skipTrivia(newlines: true)
            guard let byte = peek() else { return }
            let start = position
            if byte == UInt8(ascii: "[") {
                let arrayOfTables = peek(1) == UInt8(ascii: "[")
                position += arrayOfTables ? 2 : 1
                skipTrivia(newlines: false)
                table = keyPath()
                recordWithParents(table, line: line)
                skipTrivia(newlines: false)
                position += arrayOfTables ? 2 : 1
                skipToEndOfLine()
            } else {
                keyValue(prefix: table)
            }
            if position == start { return }  // Not TOML we understand; stop rather than loop.
        }
    }

    /// Reads `key = value`, recording the key (and the tables a dotted key implies) under
    /// `prefix`; nil `prefix` means the key has no stable path (inside an array) and is skipped.
    private mutating func keyValue(prefix: [String]?) {
        let keyLine = line
        let key = keyPath()
        if let prefix {
            // `a.b = 1` defines table `a` here too, unless it was defined earlier.
            recordWithParents(prefix + key, line: keyLine, from: prefix.count + 1)
        }
        skipTrivia(newlines: false)
        guard peek() == UInt8(ascii: "=") else { return }
        position += 1
        skipTrivia(newlines: false)
        value(path: prefix.map { $0 + key })
    }

    /// Skips one value, descending into arrays and inline tables.
    private mutating func value(path: [String]?) {
        guard let byte = peek() else { return }
        if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
            guard depth < Self.maxDepth else {
                position = bytes.count
                return
            }
            depth += 1
        }
        defer { if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") { depth -= 1 } }
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            skipString(quote: byte)
        case UInt8(ascii: "["):
            position += 1
            while let next = skipTriviaPeek(), next != UInt8(ascii: "]") {
                let start = position
                if next == UInt8(ascii: ",") { position += 1 } else { value(path: nil) }
                if position == start { position += 1 }
            }
            position += 1
        case UInt8(ascii: "{"):
            position += 1
            while let next = skipTriviaPeek(), next != UInt8(ascii: "}") {
                let start = position
                if next == UInt8(ascii: ",") { position += 1 } else { keyValue(prefix: path) }
                if position == start { position += 1 }
            }
            position += 1
        default:
            // Numbers, booleans, dates (which may hold one space): up to a delimiter.
            while let next = peek(),
                ![UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "#"), 0x0A]
                    .contains(next)
            {
                position += 1
            }
        }
    }

    /// Reads a possibly dotted key, decoding quoted parts.
    private mutating func keyPath() -> [String] {
        var parts: [String] = []
        while let byte = peek() {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                parts.append(quotedKey(quote: byte))
            } else {
                let start = position
                while let next = peek(), KeyPath.isBareKeyByte(next) { position += 1 }
                guard position > start else { break }
                parts.append(String(decoding: bytes[start..<position], as: UTF8.self))
            }
            skipTrivia(newlines: false)
            guard peek() == UInt8(ascii: ".") else { break }
            position += 1
            skipTrivia(newlines: false)
        }
        return parts
    }

    /// Reads a quoted key (`"..."` with escapes, or `'...'` literally).
    private mutating func quotedKey(quote: UInt8) -> String {
        position += 1
        var out: [UInt8] = []
        while let byte = peek(), byte != quote, byte != 0x0A {
            position += 1
            guard quote == UInt8(ascii: "\""), byte == UInt8(ascii: "\\"), let escaped = peek() else {
                out.append(byte)
                continue
            }
            position += 1
            out += decodeEscape(escaped)
        }
        position += 1
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes an escape sequence after `\` stands for (`escaped` already consumed).
    private mutating func decodeEscape(_ escaped: UInt8) -> [UInt8] {
        switch escaped {
        case UInt8(ascii: "b"): return [0x08]
        case UInt8(ascii: "t"): return [0x09]
        case UInt8(ascii: "n"): return [0x0A]
        case UInt8(ascii: "f"): return [0x0C]
        case UInt8(ascii: "r"): return [0x0D]
        case UInt8(ascii: "e"): return [0x1B]
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = escaped == UInt8(ascii: "u") ? 4 : 8
            let end = min(position + count, bytes.count)
            let hex = String(decoding: bytes[position..<end], as: UTF8.self)
            position = end
            guard let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else { return [] }
            return Array(String(Character(scalar)).utf8)
        default: return [escaped]
        }
    }

    /// Skips a string value of any of TOML's four kinds.
    private mutating func skipString(quote: UInt8) {
        let multiline = peek(1) == quote && peek(2) == quote
        position += multiline ? 3 : 1
        while let byte = peek() {
            if byte == 0x0A {
                guard multiline else { return }
                line += 1
            }
            position += 1
            if byte == UInt8(ascii: "\\"), quote == UInt8(ascii: "\"") {
                if peek() == 0x0A { line += 1 }
                position += 1
                continue
            }
            guard byte == quote else { continue }
            if !multiline { return }
            if peek() == quote, peek(1) == quote {
                position += 2
                // A closing delimiter may be preceded by up to two quotes that belong to the string.
                var extra = 0
                while extra < 2, peek() == quote {
                    position += 1
                    extra += 1
                }
                return
            }
        }
    }

    /// Skips spaces, tabs and comments, and newlines too when `newlines` is set.
    private mutating func skipTrivia(newlines: Bool) {
        while let byte = peek() {
            switch byte {
            case 0x20, 0x09, 0x0D:
                position += 1
            case 0x0A where newlines:
                position += 1
                line += 1
            case UInt8(ascii: "#"):
                while let next = peek(), next != 0x0A { position += 1 }
            default:
                return
            }
        }
    }

    /// Skips trivia including newlines (as inside arrays and inline tables) and peeks.
    private mutating func skipTriviaPeek() -> UInt8? {
        skipTrivia(newlines: true)
        return peek()
    }

    /// Skips the rest of the current line, leaving its newline.
    private mutating func skipToEndOfLine() {
        while let byte = peek(), byte != 0x0A { position += 1 }
    }

    /// The byte `offset` past the current one, if any.
    private func peek(_ offset: Int = 0) -> UInt8? {
        position + offset < bytes.count ? bytes[position + offset] : nil
    }

    /// Records `path` and its parents down to `from` components, all at `line`; a parent that
    /// was seen earlier keeps its own line (only the first sighting of a key counts).
    private mutating func recordWithParents(_ path: [String], line: Int, from: Int = 1) {
        guard from <= path.count else { return }
        for length in from...path.count {
            found.append((KeyPath.join(Array(path[..<length])), line))
        }
    }
}

extension BatonConfig {
    /// The line `keyPath` (or its nearest parent) is on in `text`, a config that parsed: for
    /// problems found after parsing, such as a user the host does not have.
    public static func line(of keyPath: [String], in text: String) -> Int? {
        KeyLineIndex(text).line(for: keyPath)
    }
}
