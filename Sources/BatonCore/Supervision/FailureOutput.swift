/// What a failed worker's last output says in the one line of a failed deploy: its last line,
/// and the error above it when the last line is not one. An apps audit: puma's and gunicorn's
/// last lines are a backtrace's `from …` line and `[ERROR] Reason: Worker failed to boot.`,
/// with the `LoadError` and `ModuleNotFoundError` that say why further up.
public enum FailureOutput {
    /// ` — last output: LINE`, or ` — error: ERROR (last output: LINE)`; nil without output.
    /// `searchable`: how many of the last lines may hold the error: those the worker printed
    /// since it was ready, when it exited with a failure of its own (a re-audit: a worker
    /// SIGKILLed after ready, and one that logged a handled exception at boot, were blamed on
    /// those lines; another, a canary's `KeyError` after ready, was then lost).
    /// `earlier`: the last line that looked like an error, which may be older than `lines` (an
    /// apps audit: a Rails `LoadError` with more `from` lines under it than baton keeps).
    public static func summary(_ lines: [String], searchable: Int = .max, earlier: EarlierError? = nil) -> String? {
        guard let last = lines.last else { return nil }
        guard !looksLikeError(trimmed(last)) else { return " — last output: \(last)" }
        let above = lines.dropLast().suffix(max(0, min(searchable, lines.count) - 1))
        let error =
            above.last(where: { looksLikeError(trimmed($0)) })
            ?? earlier.flatMap { $0.linesAgo >= 1 && $0.linesAgo < searchable ? $0.line : nil }
        guard let error else { return " — last output: \(last)" }
        return " — error: \(trimmed(error)) (last output: \(trimmed(last)))"
    }

    /// A line that looked like an error, and how many lines came after it (0: the last line).
    public struct EarlierError: Sendable, Equatable {
        public let line: String
        public let linesAgo: Int
        public init(line: String, linesAgo: Int) {
            self.line = line
            self.linesAgo = linesAgo
        }
    }

    /// A line that names an exception: Python's and Java's `NameError: …` (a dotted name ending
    /// in Error or Exception before the colon), Ruby's `… (LoadError)`.
    public static func looksLikeError(_ line: Substring) -> Bool {
        if line.hasSuffix("Error)") || line.hasSuffix("Exception)") { return true }
        guard let colon = line.firstIndex(of: ":") else { return false }
        let name = line[..<colon]
        return !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" }
            && (name.hasSuffix("Error") || name.hasSuffix("Exception"))
    }

    /// `line` without the whitespace around it (a slice: every output line is looked at).
    public static func trimmed(_ line: String) -> Substring {
        let start = line.drop(while: \.isWhitespace)
        guard let end = start.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return start[...end]
    }
}
