/// A child's output cut into lines as it arrives in chunks: a worker's pipe and an orphaned
/// worker's pipe relayed after a take-over. A line longer than `maxLine` bytes is emitted in
/// pieces, so a child that never prints a newline cannot grow it without bound.
struct OutputLines {
    /// Longest line kept whole (bytes).
    static let maxLine = 8192

    private var partial: [UInt8] = []

    /// Appends a chunk and emits every complete line in it (without its newline). Lines are cut
    /// out by index and the consumed prefix removed once: removing line by line moved the rest
    /// of the chunk for every line.
    mutating func append(_ chunk: ArraySlice<UInt8>, emit: (ArraySlice<UInt8>) -> Void) {
        partial.append(contentsOf: chunk)
        var start = partial.startIndex
        while let newline = partial[start...].firstIndex(of: 0x0A) {
            emit(partial[start..<newline])
            start = newline + 1
        }
        partial.removeSubrange(..<start)
        // In pieces of `maxLine` exactly (a logs audit: pieces of up to 16 KiB, a read's worth
        // past the limit).
        guard partial.count > Self.maxLine else { return }
        var piece = partial.startIndex
        while partial.endIndex - piece > Self.maxLine {
            emit(partial[piece..<piece + Self.maxLine])
            piece += Self.maxLine
        }
        partial.removeSubrange(..<piece)
    }

    /// Emits what is left without a newline (the child's output ended).
    mutating func flush(emit: (ArraySlice<UInt8>) -> Void) {
        guard !partial.isEmpty else { return }
        emit(partial[...])
        partial.removeAll()
    }
}
