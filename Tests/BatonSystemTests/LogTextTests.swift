@testable import BatonSystem
import Testing

/// One log line per event: control characters in a message (a client's path, a worker's
/// output) are escaped, so none can start a forged line.
@Suite struct LogTextTests {
    @Test func controlCharactersAreEscapedAndPlainTextIsLeftAlone() {
        #expect(LogText.escaped("plain text\twith a tab, é") == "plain text\twith a tab, é")
        #expect(LogText.escaped("a\nb") == "a\\nb")
        // "\r\n" is one Character in Swift: escaped as its two scalars (the audit's forged line).
        #expect(LogText.escaped("/x/crlf\r\n2026-12-05T00:00:00.000Z ERROR forged") == "/x/crlf\\r\\n2026-12-05T00:00:00.000Z ERROR forged")
        #expect(LogText.escaped("\u{1B}[31mred\u{0}<2>x\u{7F}\u{85}") == "\\x1b[31mred\\x00<2>x\\x7f\\x85")
    }

    /// A names audit: U+202E (right-to-left override) and U+2028 (line separator) passed
    /// through: a worker's output could reverse the rest of its line or break it in a viewer.
    @Test func bidirectionalAndLineSeparatorCharactersAreEscaped() {
        #expect(LogText.escaped("release \u{202E}gpj.exe") == "release \\u202egpj.exe")
        #expect(LogText.escaped("a\u{2028}b\u{2029}c\u{2066}d\u{200F}") == "a\\u2028b\\u2029c\\u2066d\\u200f")
        #expect(LogText.escaped("日本 🚀") == "日本 🚀")
    }

    /// A names audit: a release folder named `x peer_uid=1000 slot=7` logged `peer_uid=0
    /// release=/srv/x peer_uid=1000 slot=7`; a logfmt reader that keeps the last value read the
    /// forged one. A value with a space, `=`, `"` or `\` is quoted now.
    @Test func metadataValuesThatCouldForgeAFieldAreQuoted() {
        #expect(BatonLogHandler.fieldValue("/srv/shop/r1") == "/srv/shop/r1")
        #expect(BatonLogHandler.fieldValue("/srv/x peer_uid=1000 slot=7") == #""/srv/x peer_uid=1000 slot=7""#)
        #expect(BatonLogHandler.fieldValue(#"a"b\c"#) == #""a\"b\\c""#)
        #expect(BatonLogHandler.fieldValue("") == #""""#)
    }
}
