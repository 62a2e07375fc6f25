import BatonCore
import Glibc
import Logging

/// A child whose stdout and stderr baton reads through a pipe and logs line by line: a
/// worker or a mold. (An orphan's relayed output has its own reader: Supervisor+OrphanOutput.)
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

extension Supervisor {
    /// Reads at most `outputBytesPerWakeup` of a child's output, then yields:
    /// the pipe is level-triggered, so the loop calls back after the other
    /// descriptors (the control socket, signals, other workers) had their turn.
    /// Reading until EAGAIN let one worker that prints without pause hold the loop.
    func readOutput(_ source: some OutputSource) {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var total = 0
        while total < Self.outputBytesPerWakeup {
            let n = buffer.withUnsafeMutableBytes { read(source.outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                if n == 0 { closeOutput(source) }
                return
            }
            total += n
            source.outputLines.append(buffer[0..<n]) { emitOutputLine(source, $0) }
        }
    }

    /// Bytes of one child's output read per wakeup of the loop (64 KiB).
    static let outputBytesPerWakeup = 64 * 1024

    /// Logs the rest of an unfinished line and closes the pipe.
    func closeOutput(_ source: some OutputSource) {
        guard source.outputFD >= 0 else { return }
        source.outputLines.flush { emitOutputLine(source, $0) }
        loop.unregister(fd: source.outputFD)
        source.outputFD = -1  // closes it
    }

    private func emitOutputLine(_ source: some OutputSource, _ bytes: ArraySlice<UInt8>) {
        let line = String(decoding: bytes, as: UTF8.self)
        source.recentOutput.append(line)
        logger.info("\(source.outputPrefix) \(line)")
    }
}
