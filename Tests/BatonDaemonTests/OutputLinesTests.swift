@testable import BatonDaemon
import Testing

@Suite struct OutputLinesTests {
    private func lines(_ chunks: [String], flush: Bool) -> [String] {
        var buffer = OutputLines()
        var out: [String] = []
        for chunk in chunks { buffer.append(Array(chunk.utf8)[...]) { out.append(String(decoding: $0, as: UTF8.self)) } }
        if flush { buffer.flush { out.append(String(decoding: $0, as: UTF8.self)) } }
        return out
    }

    @Test func linesAcrossChunksComeOutWhole() {
        #expect(lines(["one\ntw", "o\nthr", "ee"], flush: false) == ["one", "two"])
        #expect(lines(["one\ntw", "o\nthr", "ee"], flush: true) == ["one", "two", "three"])
    }

    /// In pieces of `maxLine` exactly (a logs audit: pieces of up to 16 KiB, the read that
    /// passed the limit emitted whole).
    @Test func aLineLongerThanTheLimitIsEmittedInPieces() {
        let piece = String(repeating: "x", count: OutputLines.maxLine)
        #expect(lines([piece + "x"], flush: false) == [piece])
        #expect(lines([piece + "x"], flush: true) == [piece, "x"])
        #expect(lines([String(repeating: "x", count: 3 * OutputLines.maxLine + 5)], flush: true) == [piece, piece, piece, "xxxxx"])
        #expect(lines([String(repeating: "y", count: OutputLines.maxLine)], flush: false) == [])
        // A whole line too, when its newline comes in a later chunk (a re-audit: one piece of
        // 8,193 bytes; 8192 + 11808 for 20,000).
        #expect(lines([piece, "x\n"], flush: false) == [piece, "x"])
        let long = String(repeating: "b", count: 20_000)
        #expect(lines([String(long.prefix(8000)), String(long.dropFirst(8000)) + "\n"], flush: false).map(\.count) == [8192, 8192, 3616])
    }

    /// A names audit: `x` then 10,000 `é` was cut inside a character at each 8 KiB, a U+FFFD
    /// at the end of one piece and the start of the next. Cut before the character now.
    @Test func piecesAreCutBetweenUTF8Characters() {
        let line = "x" + String(repeating: "\u{E9}", count: 10_000) + "\n"
        let pieces = lines([line], flush: false)
        #expect(pieces.joined() == String(line.dropLast()), "nothing lost")
        #expect(!pieces.joined().contains("\u{FFFD}"))
        #expect(pieces.allSatisfy { $0.utf8.count <= OutputLines.maxLine })
        // Bytes that are not UTF-8 are cut at the limit as before.
        var buffer = OutputLines()
        var sizes: [Int] = []
        buffer.append([UInt8](repeating: 0x80, count: OutputLines.maxLine + 10)[...] + [0x0A]) { sizes.append($0.count) }
        #expect(sizes == [OutputLines.maxLine, 10])
    }

    @Test func theTailOfADrainedPipe() {
        func tail(_ text: String, _ count: Int) -> (Int, String) {
            let bytes = Array(text.utf8)
            let (skipped, start) = OutputLines.tail(of: bytes, lines: count)
            return (skipped, String(decoding: bytes[start...], as: UTF8.self))
        }
        #expect(tail("a\nb\nc\n", 2) == (1, "b\nc\n"))
        #expect(tail("a\nb\nc", 2) == (1, "b\nc"))
        #expect(tail("a\nb\n", 2) == (0, "a\nb\n"))
        #expect(tail("a\n", 5) == (0, "a\n"))
        #expect(tail("", 5) == (0, ""))
        #expect(tail("a\n\n\nb\n", 1) == (3, "b\n"))
    }
}
