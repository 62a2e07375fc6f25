import Glibc

/// A child's output cut into lines as it arrives in chunks: a worker's pipe and an orphaned
/// worker's pipe relayed after a take-over. A line longer than `maxLine` bytes is emitted in
/// pieces, so a child that never prints a newline cannot grow it without bound.
struct OutputLines {
    /// Longest line kept whole (bytes).
    static let maxLine = 8192

    private var partial: [UInt8]

    /// `pending`: the start of an unfinished line (an older image's, carried across `baton upgrade`).
    init(pending: [UInt8]? = nil) { partial = pending ?? [] }

    /// The unfinished line's bytes so far, nil when there are none (what `baton upgrade` carries).
    var pending: [UInt8]? { partial.isEmpty ? nil : partial }

    /// Appends a chunk and emits every complete line in it (without its newline). Lines are cut
    /// out by index and the consumed prefix removed once: removing line by line moved the rest
    /// of the chunk for every line.
    mutating func append(_ chunk: ArraySlice<UInt8>, emit: (ArraySlice<UInt8>) -> Void) {
        partial.append(contentsOf: chunk)
        var start = partial.startIndex
        while let newline = partial[start...].firstIndex(of: 0x0A) {
            // A whole line longer than `maxLine` in pieces too (a re-audit: an 8,193-byte line
            // whose newline came in the next read was one piece).
            start = emitPieces(from: start, before: newline, emit: emit)
            emit(partial[start..<newline])
            start = newline + 1
        }
        // The unfinished line's whole pieces (a logs audit: pieces of up to 16 KiB, a read's
        // worth past the limit); its rest waits for more.
        start = emitPieces(from: start, before: partial.endIndex, emit: emit)
        partial.removeSubrange(..<start)
    }

    /// Emits `partial[start..<end]` in pieces of `maxLine` while more than `maxLine` is left;
    /// returns where the rest begins.
    private func emitPieces(from start: Int, before end: Int, emit: (ArraySlice<UInt8>) -> Void) -> Int {
        var start = start
        while end - start > Self.maxLine {
            // Cut before a UTF-8 continuation byte's character, not inside it (a names audit: each
            // cut of a line of `é` left a U+FFFD at the end of one piece and the start of the next).
            var cut = start + Self.maxLine
            var back = 0
            while back < 3, partial[cut] & 0xC0 == 0x80 {
                cut -= 1
                back += 1
            }
            if partial[cut] & 0xC0 == 0x80 { cut = start + Self.maxLine }  // not UTF-8: cut anywhere
            emit(partial[start..<cut])
            start = cut
        }
        return start
    }

    /// Forgets the unfinished line (its start was left out of the log).
    mutating func discard() { partial.removeAll() }

    /// Where the last `count` lines of `bytes` begin (a last piece without a newline is one),
    /// and how many whole lines come before that: what a drain leaves out of the log. The lines
    /// before it are counted with memchr: a 1 MiB pipe of short lines is half a million.
    static func tail(of bytes: [UInt8], lines count: Int) -> (skipped: Int, start: Int) {
        bytes.withUnsafeBytes { raw -> (Int, Int) in
            guard let base = raw.baseAddress, raw.count > 0 else { return (0, 0) }
            // Backwards (over the tail only): the start of the last `count` lines.
            var i = raw.count - 1
            if raw[i] == 0x0A { i -= 1 }  // the last line's own newline
            var found = 0
            var start = 0
            while i >= 0 {
                if raw[i] == 0x0A {
                    found += 1
                    if found == count {
                        start = i + 1
                        break
                    }
                }
                i -= 1
            }
            if found < count { return (0, 0) }
            // Forwards: the whole lines before it.
            var skipped = 0
            var at = 0
            while at < start, let hit = memchr(base + at, 0x0A, start - at) {
                skipped += 1
                at = base.distance(to: hit) + 1
            }
            return (skipped, start)
        }
    }

    /// Emits what is left without a newline (the child's output ended).
    mutating func flush(emit: (ArraySlice<UInt8>) -> Void) {
        guard !partial.isEmpty else { return }
        emit(partial[...])
        partial.removeAll()
    }
}
