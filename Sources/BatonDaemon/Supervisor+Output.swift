import BatonCore
import BatonSystem
import Glibc
import Logging

/// A process whose stdout and stderr baton reads through a pipe and logs line by line: a
/// worker, a mold, or a crashed baton's orphan whose pipe baton took over
/// (Supervisor+OrphanOutput). One reader for all of them.
protocol OutputSource: AnyObject {
    /// Read end of its stdout+stderr pipe (-1: closed); setting -1 closes it.
    var outputFD: Int32 { get set }
    /// Bytes of an unfinished line.
    var outputLines: OutputLines { get set }
    /// Its last lines, for failure reports.
    var recentOutput: RingBuffer<String> { get set }
    /// What each of its lines starts with in baton's log, e.g. `[slot 0 pid 42]`.
    var outputPrefix: String { get }
}

extension Worker: OutputSource {
    var outputPrefix: String { "[slot \(slot) pid \(pid)]" }
}

extension Mold: OutputSource {
    var outputPrefix: String { "[mold pid \(pid)]" }
}

extension OrphanWorker: OutputSource {
    var outputPrefix: String { "[orphan slot \(slot) pid \(pid)]" }
}

extension Supervisor {
    /// Reads at most `outputBytesPerWakeup` of a child's output, then yields:
    /// the pipe is level-triggered, so the loop calls back after the other
    /// descriptors (the control socket, signals, other workers) had their turn.
    /// Reading until EAGAIN let one worker that prints without pause hold the loop.
    func readOutput(_ source: some OutputSource) {
        if readAvailable(source, upTo: Self.outputBytesPerWakeup) { closeOutput(source) }
    }

    /// Bytes of one child's output read per wakeup of the loop (64 KiB).
    static let outputBytesPerWakeup = 64 * 1024

    /// Logs what the pipe still holds, up to `limit` bytes (a process that is gone: the pipe's
    /// whole capacity, whose end holds a crashing worker's error, or an orphan's drain lines
    /// after the gap between the two batons), and the rest of an unfinished line, then closes
    /// the pipe.
    func closeOutput(_ source: some OutputSource, draining limit: Int = 0) {
        guard source.outputFD >= 0 else { return }
        _ = readAvailable(source, upTo: limit)
        source.outputLines.flush { emitOutputLine(source, $0) }
        loop.unregister(fd: source.outputFD)
        source.outputFD = -1  // closes it
    }

    /// Reads and logs what the pipe holds now, at most about `limit` bytes (16 KiB reads);
    /// true at end of file (every writer gone).
    private func readAvailable(_ source: some OutputSource, upTo limit: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var total = 0
        while total < limit {
            let n = buffer.withUnsafeMutableBytes { read(source.outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n == 0 }
            total += n
            source.outputLines.append(buffer[0..<n]) { emitOutputLine(source, $0) }
        }
        return false
    }

    private func emitOutputLine(_ source: some OutputSource, _ bytes: ArraySlice<UInt8>) {
        // Escaped once here: the log and the failure report a deploy prints show the same text.
        let line = LogText.escaped(String(decoding: bytes, as: UTF8.self))
        source.recentOutput.append(line)
        logger.info("\(source.outputPrefix) \(line)")
    }
}
