import BatonSystem
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
}
