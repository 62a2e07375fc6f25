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
    /// Its last line that looked like an error, with its number.
    var lastErrorLine: (line: String, number: Int)? { get set }
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
    /// Reads at most `outputBytesPerWakeup` of a child's output, or about `outputLinesPerWakeup`
    /// lines, then yields: the pipe is level-triggered, so the loop calls back after the other
    /// descriptors (the control socket, signals, other workers) had their turn. Reading until
    /// EAGAIN let one worker that prints without pause hold the loop; so did 64 KiB of short
    /// lines (a logs audit: a worker running `yes` made `baton status` take 0.5-2 s: a line
    /// costs what its log line costs, and 64 KiB of `y` is 32,768 of them).
    func readOutput(_ source: some OutputSource) {
        if readAvailable(source, upTo: Self.outputBytesPerWakeup, lines: Self.outputLinesPerWakeup) { closeOutput(source) }
    }

    /// Bytes of one child's output read per wakeup of the loop (64 KiB).
    static let outputBytesPerWakeup = 64 * 1024
    /// Lines after which a wakeup reads no more (the read that passes it is logged whole: at
    /// most `outputReadSize` more lines).
    static let outputLinesPerWakeup = 512
    /// One read of a child's output.
    static let outputReadSize = 4096
    /// Lines logged of what a gone child's pipe still held: its last ones, after a line that
    /// says how many were left out (a logs audit: draining the 1 MiB pipe of a worker killed
    /// while it printed `y` lines held the loop 3.3 s; 4.9 s for an orphan's at a take-over).
    static let drainLinesLogged = 1000

    /// Logs what the pipe still holds, up to `limit` bytes (a process that is gone: the pipe's
    /// whole capacity, whose end holds a crashing worker's error, or an orphan's drain lines
    /// after the gap between the two batons), and the rest of an unfinished line, then closes
    /// the pipe. Of more than `drainLinesLogged` lines, the last ones are logged.
    func closeOutput(_ source: some OutputSource, draining limit: Int = 0) {
        guard source.outputFD >= 0 else { return }
        let bytes = Self.readRemaining(source.outputFD, upTo: limit)
        // Only the tail is cut into lines and logged: a re-audit measured 0.8 s of a debug
        // build's loop for a 1 MiB pipe of `y` lines when every line was cut out first.
        let (skipped, start) = OutputLines.tail(of: bytes, lines: Self.drainLinesLogged)
        if start > 0 {
            source.outputLines.discard()  // the start of the first line left out
            logger.warning(
                "\(source.outputPrefix) \(skipped) lines (\(Units.formatSize(UInt64(start)))) of output left in its pipe not logged; its last \(Self.drainLinesLogged) follow"
            )
        }
        source.outputLines.append(bytes[start...]) { emitOutputLine(source, $0) }
        source.outputLines.flush { emitOutputLine(source, $0) }
        loop.unregister(fd: source.outputFD)
        source.outputFD = -1  // closes it
    }

    /// What a pipe holds now, at most about `limit` bytes, read in 64 KiB reads.
    private static func readRemaining(_ fd: Int32, upTo limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count < limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// Reads what the pipe holds now, at most about `limit` bytes or `lines` lines (reads of
    /// `outputReadSize`), and logs each line; true at end of file (every writer gone).
    private func readAvailable(_ source: some OutputSource, upTo limit: Int, lines: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: Self.outputReadSize)
        var (total, count) = (0, 0)
        while total < limit, count < lines {
            let n = buffer.withUnsafeMutableBytes { read(source.outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n == 0 }
            total += n
            source.outputLines.append(buffer[0..<n]) { line in
                count += 1
                emitOutputLine(source, line)
            }
        }
        return false
    }

    private func emitOutputLine(_ source: some OutputSource, _ bytes: ArraySlice<UInt8>) {
        // Escaped once here: the log and the failure report a deploy prints show the same text.
        let line = LogText.escaped(String(decoding: bytes, as: UTF8.self))
        source.recentOutput.append(line)
        if FailureOutput.looksLikeError(FailureOutput.trimmed(line)) { source.lastErrorLine = (line, source.recentOutput.appended) }
        logger.info("\(source.outputPrefix) \(line)")
    }
}
