import BatonCore
import Glibc
import Logging

/// One event a line on stderr. Under journald (JOURNAL_STREAM names stderr)
/// each line starts with an sd-daemon priority prefix such as `<6>`; otherwise
/// plain text with a timestamp. Lines go through `LogWriter.standardError`: a
/// stderr that does not keep up loses lines (counted), never blocks a logger.
public struct BatonLogHandler: LogHandler {
    /// Whether stderr is connected to the journal.
    public static let stderrIsJournal: Bool = {
        guard let value = getenv("JOURNAL_STREAM") else { return false }
        let parts = String(cString: value).split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }()

    /// The logger's label (e.g. "baton").
    public let label: String
    /// See `LogHandler`.
    public var logLevel: Logger.Level = .info
    /// See `LogHandler`.
    public var metadata: Logger.Metadata = [:]

    /// Creates a handler for `label`.
    public init(label: String) { self.label = label }

    /// See `LogHandler`.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// See `LogHandler`.
    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let suffix =
            merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.fieldValue("\($0.value)"))" }.joined(separator: " ")
        let text = LogText.escaped("\(event.message)\(suffix)")
        LogWriter.standardError.append(Array(Self.line(event.level, text).utf8))
    }

    /// A metadata value as logfmt writes one: in double quotes, `"` and `\` escaped, when it is
    /// empty or holds a space, `=`, `"` or `\` (a names audit: a release folder named
    /// `x peer_uid=1000 slot=7` put a forged `peer_uid=1000` into the deploy's line).
    static func fieldValue(_ value: String) -> String {
        guard value.isEmpty || value.utf8.contains(where: { $0 == 0x20 || $0 == 0x3D || $0 == 0x22 || $0 == 0x5C }) else { return value }
        var out = "\""
        for c in value.unicodeScalars {
            if c == "\"" || c == "\\" { out += "\\" }
            out.unicodeScalars.append(c)
        }
        return out + "\""
    }

    /// One line of baton's log: `TIMESTAMP LEVEL text`, or `<PRIORITY>text` to the journal.
    static func line(_ level: Logger.Level, _ text: String) -> String {
        Self.stderrIsJournal ? "<\(Self.priority(level))>\(text)\n" : "\(Self.timestamp()) \(level.short) \(text)\n"
    }

    /// syslog priority of a level.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tmv = tm()
        var t = ts.tv_sec
        gmtime_r(&t, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = ts.tv_nsec / 1_000_000
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday))T\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)).\(msText)Z"
    }

    /// Installs this handler for every logger (call once, early in main).
    public static func bootstrap(level: Logger.Level = .info) {
        LoggingSystem.bootstrap { label in
            var h = BatonLogHandler(label: label)
            h.logLevel = level
            return h
        }
    }
}

extension Logger.Level {
    fileprivate var short: String {
        switch self {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARN"
        case .error: "ERROR"
        case .critical: "CRIT"
        }
    }
}

/// Text made safe for one log line: a newline is `\n` and a carriage return `\r`, and every
/// other control character (C0 but the tab, DEL, C1) is `\xNN`, so nothing a worker prints or a
/// client sends (a path with "\r\n", a NUL, an escape sequence) can forge a line of its own,
/// in a file, on a terminal or in the journal (where a NUL would start a new entry).
public enum LogText {
    /// `text` with its control characters escaped (itself when it has none).
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            let escape: String
            switch scalar {
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            default:
                let hex = String(scalar.value, radix: 16)
                escape = scalar.value > 0xFF ? "\\u" + hex : "\\x" + (hex.count < 2 ? "0" : "") + hex
            }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    /// A control character but tab, a line separator or a bidirectional formatting character
    /// (a names audit: a worker's U+202E reversed the rest of its log line).
    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar != "\t" && ControlProtocol.isHidden(scalar)
    }
}
