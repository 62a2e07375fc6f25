/// What a failed worker's last output says in the one line of a failed deploy: its last line,
/// and the error above it when the last line is not one. An apps audit: puma's and gunicorn's
/// last lines are a backtrace's `from …` line and `[ERROR] Reason: Worker failed to boot.`,
/// with the `LoadError` and `ModuleNotFoundError` that say why further up.
public enum FailureOutput {
    /// ` — last output: LINE`, or ` — error: ERROR (last output: LINE)`; nil without output.
    /// `lookAbove`: the worker exited on its own with a failure before it was ready, so an error
    /// it printed above its last line is why (a re-audit: a worker SIGKILLed after ready, and
    /// one that logged a handled exception at boot, were blamed on those lines).
    public static func summary(_ lines: [String], lookAbove: Bool = true) -> String? {
        guard let last = lines.last else { return nil }
        if lookAbove, !looksLikeError(trimmed(last)), let error = lines.dropLast().last(where: { looksLikeError(trimmed($0)) }) {
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
