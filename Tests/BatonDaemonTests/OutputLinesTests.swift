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

    @Test func aLineLongerThanTheLimitIsEmittedInPieces() {
        let long = String(repeating: "x", count: OutputLines.maxLine + 1)
        #expect(lines([long], flush: false) == [long])
        #expect(lines([String(repeating: "y", count: OutputLines.maxLine)], flush: false) == [])
    }
}
