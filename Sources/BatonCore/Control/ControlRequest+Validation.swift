/// Checks of a decoded request's values, done by the decoder so that nothing behind it sees a
/// value that would be cut short (a NUL ends a C string: an argv, an environment entry, a
/// path) or overflow later arithmetic (a size added to others, a count used as a bound).
extension ControlRequest {
    /// The longest path taken (Linux's PATH_MAX, 4096 with its NUL): a longer one cannot be
    /// opened, and whole, it made a 10,000-character error line.
    static let maxPathBytes = 4095

    /// The first problem with this request's values, as one line naming the field; nil if none.
    func problem() -> String? {
        if let binary, binary.utf8.contains(0) { return "binary contains a NUL byte" }
        if let binary, binary.utf8.count > ControlRequest.maxPathBytes { return ControlRequest.tooLong("binary", binary) }
        if let release = preflight?.release ?? deploy?.release, release.utf8.count > ControlRequest.maxPathBytes {
            return ControlRequest.tooLong(preflight?.release != nil ? "preflight.release" : "deploy.release", release)
        }
        if let preflight {
            if let release = preflight.release, release.utf8.contains(0) { return "preflight.release contains a NUL byte" }
            if let need = preflight.need, Units.parseBoundedSize(need) == nil {
                return "preflight.need: expected a size like \"512MiB\", at most 1 PiB, got \"\(ControlProtocol.printable(need))\""
            }
        }
        if let deploy { return deploy.problem() }
        return nil
    }

    /// "`field` is longer than 4095 bytes (N): "<its start>…"".
    static func tooLong(_ field: String, _ path: String) -> String {
        "\(field) is longer than \(maxPathBytes) bytes (\(path.utf8.count)): \"\(ControlProtocol.printable(path))\""
    }
}

extension DeployOptions {
    /// The first problem with these options' values, as one line naming the field; nil if none.
    func problem() -> String? {
        if let release, release.utf8.contains(0) { return "deploy.release contains a NUL byte" }
        if let command, command.contains(where: { $0.utf8.contains(0) }) { return "deploy.command contains a NUL byte" }
        if let environment, environment.contains(where: { $0.name.utf8.contains(0) || $0.value.utf8.contains(0) }) {
            return "deploy.environment contains a NUL byte"
        }
        // As `[app.environment]` and an environment file refuse them (`--env 1A=v` was taken).
        if let bad = environment?.first(where: { !EnvironmentFile.isValidName($0.name) }) {
            return "deploy.environment: \"\(ControlProtocol.printable(bad.name))\" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
        }
        // deploy.max_surge is the daemon's to bound (by `[app] workers`): refused there, a deploy
        // refused as asked has a history line, which `deploy --attach --release` answers with (a
        // re-audit: refused here at 1025, it had none, and attach answered an older success).
        if let timeout, let problem = Units.timeoutProblem(timeout, option: "deploy.timeout") { return problem }
        return nil
    }
}
