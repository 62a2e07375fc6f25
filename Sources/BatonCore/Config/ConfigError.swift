/// A problem with a baton config or environment file, located as precisely as the input allows.
///
/// Its ``description`` is one line, `path:line:column: key: message`, leaving out the parts that
/// are unknown, so the CLI can print it as is: `/etc/baton/shop.toml:4: app.workers: must be
/// between 1 and 1024, got 0`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file the problem is in; "" for a config that did not come from a file.
    public var path: String
    /// The 1-based line of the problem, when it can be pinned to one.
    public var line: Int?
    /// The 1-based column of the problem; only TOML syntax errors have one.
    public var column: Int?
    /// The dotted key the problem is about (`app.workers`), when there is one.
    public var key: String?
    /// What is wrong, without the location.
    public var message: String
    /// Not the config's fault: its parser could not run, timed out or was killed (SIGKILL,
    /// the OOM killer). `serve` exits 1 on it, which systemd restarts, not 2 (a names audit
    /// saw `config parser timed out after 10s` on a host at load 23, and the shipped unit's
    /// `RestartPreventExitStatus=2` would have left such a baton down).
    public var isTransient = false

    /// Creates an error from its parts.
    public init(path: String, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        self.path = path
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    /// The one-line form: `path:line:column: key: message`, absent parts left out.
    public var description: String {
        var location = path.isEmpty && line != nil ? "<config>" : path
        if let line {
            location += ":\(line)"
            if let column { location += ":\(column)" }
        }
        var parts: [String] = []
        if !location.isEmpty { parts.append(location) }
        if let key, !key.isEmpty { parts.append(key) }
        parts.append(message)
        return Self.withHiddenEscaped(parts.joined(separator: ": "))
    }

    /// `text` with its hidden characters (``ControlProtocol/isHidden(_:)``) as `\uXXXX`, as
    /// TOML writes them; tabs stay (a re-audit: an ESC in `environment_file`'s path, and a
    /// U+202E in a TOML syntax error, reached the terminal raw).
    static func withHiddenEscaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 != "\t" && ControlProtocol.isHidden($0) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard scalar != "\t", ControlProtocol.isHidden(scalar) else {
                out.append(scalar)
                continue
            }
            out.append(contentsOf: ControlProtocol.unicodeEscape(scalar).unicodeScalars)
        }
        return String(out)
    }
}
