/// The versioned handshake of `baton upgrade`: the check child
/// (`BINARY upgrade --check --handshake-fd N --nonce HEX`) writes exactly
/// `baton-upgrade-protocol 1 ready HEX` on fd N once it loaded the config and
/// the state. An exit code alone proves nothing (`/bin/true` exits 0), so the
/// daemon execs only a binary that answered this line with its nonce. A check
/// that cannot go on says why instead (`baton-upgrade-protocol 1 refuse REASON`),
/// so the refusal `baton upgrade` prints names the reason, not only an exit code.
public enum UpgradeHandshake {
    /// The protocol version this build speaks.
    public static let version = 1
    /// The first word of the line.
    public static let magic = "baton-upgrade-protocol"
    /// Longest answer read (a ready answer is under 64 bytes; a refusal is cut to fit).
    public static let maxAnswerBytes = 512

    /// The line a check child writes (with its newline).
    public static func answer(nonce: String) -> String { "\(magic) \(version) ready \(nonce)\n" }

    /// The line a check child writes when it will not run (with its newline): `reason` on one
    /// line, cut so that the whole answer fits in ``maxAnswerBytes``.
    public static func refusalAnswer(reason: String) -> String {
        let prefix = "\(magic) \(version) refuse "
        return prefix + oneLine(reason, maxBytes: maxAnswerBytes - prefix.utf8.count - 1) + "\n"
    }

    /// `text` with control characters shown as "?", cut to at most `maxBytes` of UTF-8 ("…" marks a cut).
    static func oneLine(_ text: String, maxBytes: Int) -> String {
        var line = ""
        var bytes = 0
        for scalar in text.unicodeScalars {
            let shown: Unicode.Scalar = scalar.value < 0x20 || scalar.value == 0x7F ? "?" : scalar
            guard bytes + UTF8.width(shown) <= maxBytes - 3 else { return line + "…" }
            line.unicodeScalars.append(shown)
            bytes += UTF8.width(shown)
        }
        return line
    }

    /// Why `output` (what the check child wrote on the handshake fd) does not
    /// prove a baton speaking this protocol with `nonce`; nil when it does.
    public static func refusal(output: [UInt8], nonce: String) -> String? {
        let text = String(decoding: output.prefix(maxAnswerBytes), as: UTF8.self)
        guard let line = text.split(separator: "\n", omittingEmptySubsequences: false).first, !line.isEmpty else {
            return "no handshake (expected \"\(magic) \(version) ready <nonce>\" on the handshake fd)"
        }
        let words = line.split(separator: " ")
        if words.count >= 3, words[0] == magic, words[1] == String(version), words[2] == "refuse" {
            let reason = words.dropFirst(3).joined(separator: " ")
            return reason.isEmpty ? "refused without a reason" : oneLine(reason, maxBytes: maxAnswerBytes)
        }
        guard words.count == 4, words[0] == magic, words[2] == "ready" else {
            return "no handshake: answered \"\(ControlProtocol.printable(String(line)))\""
        }
        guard words[1] == String(version) else {
            return "speaks upgrade protocol \(ControlProtocol.printable(String(words[1]))), this baton speaks protocol \(version)"
        }
        guard words[3] == nonce else { return "handshake nonce mismatch (a stale or forged answer)" }
        return nil
    }

    /// A fresh random nonce (32 hex digits).
    public static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in
            let b = UInt8.random(in: 0...255, using: &generator)
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }
}
