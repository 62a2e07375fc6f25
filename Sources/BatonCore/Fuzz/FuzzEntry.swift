/// What the fuzzers in `Fuzz/` drive, and what the tests replay the committed crash corpora
/// through: each takes arbitrary bytes and returns one line saying what became of them.
///
/// The config target covers the code that runs in the daemon's own process on untrusted text:
/// the raw-byte precheck, the key-line scanner, unit, address and environment-file parsing and
/// the unknown-key suggestion. The TOML parser itself (TOMLKit's C++ toml++, which aborts on
/// some malformed input) only ever runs on untrusted text in a child process (see
/// `ConfigParserProcess` in BatonSystem), so a crash there is contained and is not fuzzed here.
public enum FuzzEntry {
    /// A line starting with this marks a broken invariant: the fuzzers trap on it.
    public static let bugMarker = "BUG: "

    /// Feeds `bytes` as a config (and as an environment file) to the in-process text checks.
    public static func config(_ bytes: [UInt8]) -> String {
        if let error = ConfigPrecheck.check(bytes, path: "fuzz.toml") { return error.description }
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = bytes.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
        var scanner = TOMLLineScanner(bytes: Array(text.utf8))
        scanner.scanDocument()
        let index = KeyLineIndex(text)
        var suggested = 0
        for found in scanner.found {
            guard (1...lines).contains(found.line) else { return bugMarker + "key on line \(found.line) of \(lines)" }
            let path = found.key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            if let line = index.line(for: path), !(1...lines).contains(line) { return bugMarker + "line \(line) of \(lines)" }
            if ConfigSchema.suggestion(for: path) != nil { suggested += 1 }
            _ = ConfigSchema.echoed(found.key)
        }
        var values = 0
        for line in text.split(whereSeparator: \.isNewline) {
            let value = line.drop { $0 != "=" }.dropFirst().trimmingSpaces.trimmingQuotes
            if Units.parseDuration(value) != nil { values += 1 }
            if let size = Units.parseBoundedSize(value) {
                guard size <= Units.maxSize else { return bugMarker + "size above the bound" }
                values += 1
            }
            if Units.parsePercent(value) != nil { values += 1 }
            if let address = ListenAddress.parse(value), ListenAddress.parse(address.description) != address {
                return bugMarker + "address does not survive formatting: \(ControlProtocol.printable(value))"
            }
        }
        let environment: String
        do {
            environment = "\(try EnvironmentFile.parse(text, path: "fuzz.env").count) variables"
        } catch {
            environment = error.description.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        }
        return "\(scanner.found.count) keys, \(suggested) suggestions, \(values) values; env: \(environment)"
    }

    /// Feeds `bytes` as one control request line to the decoder; a request must survive
    /// being encoded and decoded again unchanged.
    public static func control(_ bytes: [UInt8]) -> String {
        switch ControlProtocol.decodeRequest(bytes) {
        case .failure(let error):
            return error.message.contains("\n" as Character) ? bugMarker + "multi-line error" : error.message
        case .success(let request):
            let line = ControlProtocol.encodeLine(request)
            guard case .success(let again) = ControlProtocol.decodeRequest(Array(line.dropLast())), again == request else {
                return bugMarker + "request does not survive encoding: \(ControlProtocol.printable(request.cmd))"
            }
            return "request \(ControlProtocol.printable(request.cmd))"
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }

    /// Without one pair of surrounding double quotes, as a String.
    fileprivate var trimmingQuotes: String {
        count >= 2 && first == "\"" && last == "\"" ? String(dropFirst().dropLast()) : String(self)
    }
}
