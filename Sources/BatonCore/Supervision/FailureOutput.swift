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
    public static func summary(_ lines: [String], searchable: Int = .max) -> String? {
        guard let last = lines.last else { return nil }
        let above = lines.dropLast().suffix(max(0, min(searchable, lines.count) - 1))
        if !looksLikeError(trimmed(last)), let error = above.last(where: { looksLikeError(trimmed($0)) }) {
            return " — error: \(trimmed(error)) (last output: \(trimmed(last)))"
        }
        return " — last output: \(last)"
    }

    /// A line that names an exception: Python's and Java's `NameError: …` (a dotted name ending
    /// in Error or Exception before the colon), Ruby's `… (LoadError)`.
    static func looksLikeError(_ line: String) -> Bool {
        if line.hasSuffix("Error)") || line.hasSuffix("Exception)") { return true }
        guard let colon = line.firstIndex(of: ":") else { return false }
        let name = line[..<colon]
        return !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" }
            && (name.hasSuffix("Error") || name.hasSuffix("Exception"))
    }

    /// `line` without the whitespace around it.
    private static func trimmed(_ line: String) -> String {
        String(String(line.drop(while: \.isWhitespace).reversed()).drop(while: \.isWhitespace).reversed())
    }
}
