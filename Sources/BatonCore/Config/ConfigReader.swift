import TOMLKit

/// One table of the document being read as a config section, with the path it sits at.
struct ConfigSection {
    /// The section's key path (`["app"]`, `["app", "environment"]`).
    let path: [String]
    /// The table, nil when the document does not have it.
    let table: TOMLTable?

    /// The raw value of `key`, if present.
    func value(_ key: String) -> TOMLValueConvertible? {
        table?[key]
    }

    /// The full path of `key` in this section.
    func path(_ key: String) -> [String] {
        path + [key]
    }
}

/// The result of converting one raw TOML value.
enum Conversion<Value> {
    /// The value was acceptable.
    case value(Value)
    /// It was not; the message says why (without the key).
    case invalid(String)
}

/// Reads typed values out of sections, collecting every problem with its line instead of
/// stopping at the first, so that the one reported is the first in the file.
struct ConfigReader {
    /// The file being read, for messages.
    let path: String
    /// Where each key is.
    let index: KeyLineIndex
    /// Every problem found so far, in the order found.
    private(set) var errors: [ConfigError] = []

    /// Starts reading the document at `path`.
    init(path: String, index: KeyLineIndex) {
        self.path = path
        self.index = index
    }

    /// The problem earliest in the file (problems without a line come last), if any.
    var firstError: ConfigError? {
        errors.enumerated().min { lhs, rhs in
            (lhs.element.line ?? Int.max, lhs.offset) < (rhs.element.line ?? Int.max, rhs.offset)
        }?.element
    }

    /// Records a problem with the value at `keyPath`, located at its line unless `line` is given.
    mutating func report(_ keyPath: [String], _ message: String, line: Int? = nil) {
        errors.append(
            ConfigError(
                path: path, line: line ?? index.line(for: keyPath), key: KeyPath.join(keyPath),
                message: message))
    }

    /// Records a problem that is about a key's existence rather than its value (the message
    /// names the key itself), located at `keyPath`'s line.
    mutating func reportUnkeyed(at keyPath: [String], _ message: String) {
        errors.append(ConfigError(path: path, line: index.line(for: keyPath), message: message))
    }

    /// Converts `section.key` if present; nil when absent or invalid (a problem is recorded).
    mutating func read<Value>(
        _ section: ConfigSection, _ key: String,
        _ convert: (TOMLValueConvertible) -> Conversion<Value>
    ) -> Value? {
        guard let raw = section.value(key) else { return nil }
        switch convert(raw) {
        case .value(let value):
            return value
        case .invalid(let message):
            report(section.path(key), message)
            return nil
        }
    }

    /// Records `section.key` as missing when it is; located at the section's header.
    mutating func require(_ section: ConfigSection, _ key: String) {
        guard let table = section.table, section.value(key) == nil else { return }
        // A misspelling of it is the error, where it is and with its suggestion (checkKeys), not
        // a missing key at the section's header (a reload audit: `workres = 4` gave
        // "cfg.toml:1: app.workers: required key is missing").
        let wanted = KeyPath.join(section.path(key))
        for (name, _) in table where Self.suggestion(for: section.path(name)) == wanted { return }
        report(section.path(key), "required key is missing", line: index.line(for: section.path))
    }

    /// Records `message` against `section.key` unless `condition` holds.
    mutating func check(
        _ condition: Bool, _ section: ConfigSection, _ key: String, _ message: @autoclosure () -> String
    ) {
        if !condition { report(section.path(key), message()) }
    }
}

/// Conversions from raw TOML values, with baton's wording for what went wrong.
enum Convert {
    /// `expected a duration ...`, the wording for a duration given without a unit or malformed.
    static let durationHint = #"expected a duration with a unit, like "30s" or "500ms""#
    /// The wording for a size given without a unit or malformed.
    static let sizeHint = #"expected a size with a unit, like "512MiB""#
    /// The wording for a percentage given without `%` or malformed.
    static let percentHint = #"expected a percentage, like "90%""#

    /// A string.
    static func string(_ raw: TOMLValueConvertible) -> Conversion<String> {
        guard let value = raw.string else { return .invalid("expected a string, got \(describe(raw))") }
        return .value(value)
    }

    /// A non-empty string.
    static func nonEmptyString(_ raw: TOMLValueConvertible) -> Conversion<String> {
        guard let value = raw.string else { return .invalid("expected a string, got \(describe(raw))") }
        return value.isEmpty ? .invalid("must not be empty") : .value(value)
    }

    /// A boolean.
    static func bool(_ raw: TOMLValueConvertible) -> Conversion<Bool> {
        guard let value = raw.bool else { return .invalid("expected a boolean, got \(describe(raw))") }
        return .value(value)
    }

    /// An integer in `range` (whose upper bound may be unbounded: `2...Int.max`).
    static func integer(in range: ClosedRange<Int>) -> (TOMLValueConvertible) -> Conversion<Int> {
        { raw in
            guard let value = raw.int else { return .invalid("expected an integer, got \(describe(raw))") }
            guard range.contains(value) else {
                if range.upperBound == Int.max {
                    return .invalid("must be at least \(range.lowerBound), got \(value)")
                }
                return .invalid("must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            }
            return .value(value)
        }
    }

    /// An absolute path.
    static func absolutePath(_ raw: TOMLValueConvertible) -> Conversion<String> {
        guard let value = raw.string else { return .invalid("expected a string, got \(describe(raw))") }
        guard value.hasPrefix("/") else { return .invalid("must be an absolute path, got \(quote(value))") }
        return .value(value)
    }

    /// An array of strings, such as an argv; `shellHint` words the error for a plain string.
    static func stringArray(shellHint: Bool) -> (TOMLValueConvertible) -> Conversion<[String]> {
        { raw in
            if shellHint, raw.type == .string {
                return .invalid("must be an array of strings (argv), not a shell string")
            }
            guard let array = raw.array else { return .invalid("expected an array of strings, got \(describe(raw))") }
            var strings: [String] = []
            for (offset, element) in array.enumerated() {
                guard let string = element.string else {
                    return .invalid("expected an array of strings, got \(describe(element)) at index \(offset)")
                }
                strings.append(string)
            }
            return .value(strings)
        }
    }

    /// A duration with a unit; `positive` rejects zero.
    static func duration(positive: Bool) -> (TOMLValueConvertible) -> Conversion<Duration> {
        { raw in
            guard let text = raw.string, let value = Units.parseDuration(text) else {
                return .invalid("\(durationHint), got \(describeValue(raw))")
            }
            if positive, value == .zero { return .invalid("must be greater than zero, got \(quote(text))") }
            return .value(value)
        }
    }

    /// A duration of at least `floor`; `because` says what a shorter one would do. A numeric
    /// audit: a watchdog of 1ms was never judged (baton checks at most every 10 ms, and a gap
    /// over 1.5 watchdogs reads as baton's own stall), probe intervals of 1ns forked 700
    /// probes a second, and an idle timeout of 1ns failed 15 of 20 `baton status`.
    static func duration(atLeast floor: Duration, because: String) -> (TOMLValueConvertible) -> Conversion<Duration> {
        { raw in
            let converted = duration(positive: true)(raw)
            guard case .value(let value) = converted, value < floor else { return converted }
            return .invalid("must be at least \(Units.formatDuration(floor)) (\(because)), got \(quote(raw.string ?? ""))")
        }
    }

    /// A size with a unit; `positive` rejects zero.
    static func size(positive: Bool) -> (TOMLValueConvertible) -> Conversion<UInt64> {
        { raw in
            guard let text = raw.string, let exact = Units.parseSizeExact(text) else {
                return .invalid("\(sizeHint), got \(describeValue(raw))")
            }
            // Bounded here so that no later sum or product of sizes can overflow.
            guard exact <= UInt128(Units.maxSize) else { return .invalid("must be at most 1 PiB, got \(quote(text))") }
            let value = UInt64(exact)
            if positive, value == 0 { return .invalid("must be greater than zero, got \(quote(text))") }
            return .value(value)
        }
    }

    /// A percentage in (0%, 100%], as a fraction.
    static func fraction(_ raw: TOMLValueConvertible) -> Conversion<Double> {
        guard let text = raw.string, let value = Units.parsePercent(text) else {
            return .invalid("\(percentHint), got \(describeValue(raw))")
        }
        guard value > 0, value <= 1 else {
            return .invalid("must be greater than 0% and at most 100%, got \(quote(text))")
        }
        return .value(value)
    }

    /// One of an enum's raw values.
    static func choice<Choice: RawRepresentable>(
        _ all: [Choice]
    ) -> (TOMLValueConvertible) -> Conversion<Choice> where Choice.RawValue == String {
        { raw in
            guard let text = raw.string else { return .invalid("expected a string, got \(describe(raw))") }
            guard let value = Choice(rawValue: text) else {
                let names = all.map { quote($0.rawValue) }.joined(separator: ", ")
                return .invalid("must be one of \(names), got \(quote(text))")
            }
            return .value(value)
        }
    }

    /// "a string", "an integer", ...: the kind of a value, for "expected X, got Y".
    static func describe(_ raw: TOMLValueConvertible) -> String {
        switch raw.type {
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .bool: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        case .date: return "a date"
        case .time: return "a time"
        case .dateTime: return "a date-time"
        }
    }

    /// A string or number as written (`"30x"`, `30`), anything else by its kind.
    static func describeValue(_ raw: TOMLValueConvertible) -> String {
        if let string = raw.string { return quote(string) }
        if let int = raw.int { return String(int) }
        if let double = raw.double { return String(double) }
        return describe(raw)
    }

    /// `text` in double quotes, escaped as in TOML, for messages (see ``KeyPath/quote(_:)``).
    static func quote(_ text: String) -> String {
        KeyPath.quote(text)
    }
}
