/// Parsing and formatting of the units baton's config uses: durations (`"30s"`, `"1h30m"`),
/// byte sizes (`"512MiB"`) and percentages (`"90%"`).
///
/// A unit is always required: a bare `30` could mean seconds or milliseconds, bytes or
/// megabytes, and guessing wrong silently is worse than refusing.
public enum Units {
    /// Duration units and their length in nanoseconds.
    private static let durationUnits: [String: UInt128] = [
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "min": 60_000_000_000,
        "h": 3_600_000_000_000,
        "d": 86_400_000_000_000,
    ]

    /// Size units and their size in bytes: `K M G T` and `KiB MiB GiB TiB` are 1024-based (as in
    /// systemd), `KB MB GB TB` are 1000-based.
    private static let sizeUnits: [String: UInt128] = [
        "B": 1,
        "K": 1 << 10, "KiB": 1 << 10, "KB": 1_000,
        "M": 1 << 20, "MiB": 1 << 20, "MB": 1_000_000,
        "G": 1 << 30, "GiB": 1 << 30, "GB": 1_000_000_000,
        "T": 1 << 40, "TiB": 1 << 40, "TB": 1_000_000_000_000,
        "P": 1 << 50, "PiB": 1 << 50, "PB": 1_000_000_000_000_000,
    ]

    /// Parses a duration such as `"30s"`, `"500ms"`, `"1.5s"`, `"5m"`, `"5min"`, `"1h30m"` or
    /// `"2d"`; components may be separated by spaces (`"1h 30m"`).
    ///
    /// - Returns: nil for a number without a unit, an unknown unit, a negative or malformed value,
    ///   or one too large to represent in nanoseconds.
    public static func parseDuration(_ s: String) -> Duration? {
        guard let total = durationNanoseconds(s), total <= UInt128(Int64.max) else { return nil }
        return .nanoseconds(Int64(total))
    }

    /// A duration's nanoseconds, unbounded (nil when malformed).
    private static func durationNanoseconds(_ s: String) -> UInt128? {
        var scanner = NumberScanner(s)
        var total: UInt128 = 0
        var components = 0
        while true {
            scanner.skipSpaces()
            if scanner.atEnd { break }
            guard let number = scanner.decimal() else { return nil }
            let unit = scanner.letters()
            guard let factor = durationUnits[unit] else { return nil }
            let (sum, overflow) = total.addingReportingOverflow(number.scaled(by: factor))
            // Past Int64 nanoseconds is past any limit: kept there, so the caller can say "too large".
            total = overflow ? UInt128(Int64.max) + 1 : min(sum, UInt128(Int64.max) + 1)
            components += 1
        }
        return components > 0 ? total : nil
    }

    /// The one-line refusal of a `--timeout`-like `option` given `text`, nil when it is a
    /// duration over zero: negative, zero, too large (past 292 years of nanoseconds) and
    /// malformed each say so, and the value shown is cut to 64 characters.
    public static func timeoutProblem(_ text: String, option: String) -> String? {
        let problem: String
        if let d = parseDuration(text) {
            guard d <= .zero else { return nil }
            problem = "must be more than 0s"
        } else if text.drop(while: { $0 == " " }).hasPrefix("-") {
            problem = "must not be negative"
        } else if durationNanoseconds(text) != nil {
            problem = "too large"
        } else {
            problem = "expected a duration like \"10m\""
        }
        return "\(option): \(problem), got \"\(ControlProtocol.printable(text))\""
    }

    /// The largest size a config or a request may give, 1 PiB: far above any real host, and
    /// low enough that every sum and product baton forms from sizes (`max_surge` × footprint
    /// + `--need`, with at most 1024 workers) stays far below `UInt64.max`.
    public static let maxSize: UInt64 = 1 << 50

    /// Parses a byte size such as `"512MiB"`, `"1.5GiB"`, `"2G"`, `"100MB"` or `"4096B"`; a space
    /// may separate the number from the unit (`"512.0 MiB"`, as ``formatSize(_:)`` writes it).
    ///
    /// Fractions of a byte are dropped. - Returns: nil without a unit, for an unknown unit, a
    /// malformed value, or one larger than `UInt64.max`.
    public static func parseSize(_ s: String) -> UInt64? {
        guard let bytes = parseSizeExact(s), bytes <= UInt128(UInt64.max) else { return nil }
        return UInt64(bytes)
    }

    /// Like ``parseSize(_:)``, but nil for a size above ``maxSize`` too: what untrusted input
    /// (`--need`, a control request) goes through before any arithmetic.
    public static func parseBoundedSize(_ s: String) -> UInt64? {
        guard let bytes = parseSizeExact(s), bytes <= UInt128(maxSize) else { return nil }
        return UInt64(bytes)
    }

    /// A size's exact byte count, unbounded (20 digits times 1 TiB fit in 128 bits).
    static func parseSizeExact(_ s: String) -> UInt128? {
        var scanner = NumberScanner(s)
        scanner.skipSpaces()
        guard let number = scanner.decimal() else { return nil }
        scanner.skipSpaces()
        let unit = scanner.letters()
        scanner.skipSpaces()
        guard scanner.atEnd, let factor = sizeUnits[unit] else { return nil }
        return number.scaled(by: factor)
    }

    /// Parses a percentage such as `"90%"` or `"12.5%"` into a fraction (`0.9`, `0.125`).
    ///
    /// - Returns: nil without the `%` sign or for a malformed or negative number. The range is
    ///   the caller's to check: `"150%"` gives `1.5`.
    public static func parsePercent(_ s: String) -> Double? {
        var text = Substring(s)
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        guard text.last == "%" else { return nil }
        text.removeLast()
        while text.last == " " { text.removeLast() }
        var scanner = NumberScanner(String(text))
        guard scanner.decimal() != nil, scanner.atEnd, let value = Double(text) else { return nil }
        return value / 100
    }

    /// Formats a duration compactly, in a form ``parseDuration(_:)`` reads back: `"0s"`,
    /// `"500ms"`, `"2s"`, `"1.5s"`, `"1h30m"`, `"1d2h"`.
    public static func formatDuration(_ d: Duration) -> String {
        let (seconds, attoseconds) = d.components
        let nanos = Int128(seconds) * 1_000_000_000 + Int128(attoseconds / 1_000_000_000)
        if nanos < 0 { return "-" + format(nanoseconds: UInt128(-nanos)) }
        return format(nanoseconds: UInt128(nanos))
    }

    /// A measured time for logs and progress lines, rounded for humans:
    /// `"4ms"`, `"350ms"`, `"1.25s"`, `"2m05s"`.
    public static func formatElapsed(_ d: Duration) -> String {
        let (seconds, attoseconds) = d.components
        let ms = max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        if ms < 1000 { return "\(ms)ms" }
        if ms < 60_000 {
            let hundredths = (ms + 5) / 10
            let fraction = hundredths % 100
            return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)s"
        }
        let s = ms / 1000
        let rest = s % 60
        return "\(s / 60)m\(rest < 10 ? "0" : "")\(rest)s"
    }

    /// Formats a byte count with binary units and one decimal: `"512 B"`, `"512.0 MiB"`,
    /// `"1.5 GiB"`.
    public static func formatSize(_ bytes: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        guard bytes >= 1024 else { return "\(bytes) B" }
        var index = 0
        var unit: UInt128 = 1024
        var tenths = (UInt128(bytes) * 10 + unit / 2) / unit
        // Move up a unit when rounding (or the value) reaches 1024 of the current one.
        while tenths >= 10_240, index + 1 < units.count {
            index += 1
            unit *= 1024
            tenths = (UInt128(bytes) * 10 + unit / 2) / unit
        }
        return "\(tenths / 10).\(tenths % 10) \(units[index])"
    }

    /// The compact form of a non-negative nanosecond count.
    private static func format(nanoseconds total: UInt128) -> String {
        let second: UInt128 = 1_000_000_000
        if total == 0 { return "0s" }
        if total < second {
            return decimal(total, per: 1_000_000, fractionDigits: 6) + "ms"
        }
        var out = ""
        var rest = total
        for (name, length) in [("d", 86_400 * second), ("h", 3_600 * second), ("m", 60 * second)] {
            if rest >= length {
                out += "\(rest / length)\(name)"
                rest %= length
            }
        }
        if rest > 0 {
            out += decimal(rest, per: second, fractionDigits: 9) + "s"
        }
        return out
    }

    /// `value / per` written in decimal with trailing zeros of the fraction removed.
    private static func decimal(_ value: UInt128, per: UInt128, fractionDigits: Int) -> String {
        let whole = value / per
        var fraction = value % per
        guard fraction > 0 else { return "\(whole)" }
        var digits = fractionDigits
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let text = String(fraction)
        return "\(whole)." + String(repeating: "0", count: digits - text.count) + text
    }
}

/// A non-negative decimal number kept exactly as integer and fraction digits, so that
/// `"1.5GiB"` and `"0.1s"` scale without floating-point rounding.
struct ExactDecimal: Sendable {
    /// The digits before the point.
    var whole: UInt128
    /// The digits after the point, as an integer.
    var fraction: UInt128
    /// How many digits `fraction` has (leading zeros included).
    var fractionDigits: Int

    /// `self × factor`, dropping whatever is below one unit of the result.
    func scaled(by factor: UInt128) -> UInt128 {
        var divisor: UInt128 = 1
        for _ in 0..<fractionDigits { divisor *= 10 }
        return whole * factor + fraction * factor / divisor
    }
}

/// A cursor over the ASCII bytes of a unit string.
struct NumberScanner {
    /// The bytes being read.
    private let bytes: [UInt8]
    /// The next byte to read.
    private var position = 0

    /// Starts at the beginning of `text`.
    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    /// Whether every byte has been consumed.
    var atEnd: Bool { position >= bytes.count }

    /// Skips ASCII spaces and tabs.
    mutating func skipSpaces() {
        while position < bytes.count, bytes[position] == 0x20 || bytes[position] == 0x09 {
            position += 1
        }
    }

    /// Reads `DIGITS[.DIGITS]`; nil (and nothing consumed that matters) when there is no digit
    /// first, no digit after the point, or too many digits to be a sane config value.
    mutating func decimal() -> ExactDecimal? {
        var whole: UInt128 = 0
        var wholeDigits = 0
        while position < bytes.count, let digit = digitValue(bytes[position]) {
            guard wholeDigits < 20 else { return nil }
            whole = whole * 10 + digit
            wholeDigits += 1
            position += 1
        }
        guard wholeDigits > 0 else { return nil }
        var fraction: UInt128 = 0
        var fractionDigits = 0
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            while position < bytes.count, let digit = digitValue(bytes[position]) {
                // Digits past the 18th cannot matter at nanosecond or byte precision.
                if fractionDigits < 18 {
                    fraction = fraction * 10 + digit
                    fractionDigits += 1
                }
                position += 1
            }
            guard fractionDigits > 0 else { return nil }
        }
        return ExactDecimal(whole: whole, fraction: fraction, fractionDigits: fractionDigits)
    }

    /// Reads a run of ASCII letters (possibly empty).
    mutating func letters() -> String {
        let start = position
        while position < bytes.count, isLetter(bytes[position]) { position += 1 }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    /// The value of an ASCII digit, nil for anything else.
    private func digitValue(_ byte: UInt8) -> UInt128? {
        (0x30...0x39).contains(byte) ? UInt128(byte - 0x30) : nil
    }

    /// Whether `byte` is an ASCII letter.
    private func isLetter(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }
}
