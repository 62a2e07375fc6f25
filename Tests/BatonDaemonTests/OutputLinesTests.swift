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
    }
}
