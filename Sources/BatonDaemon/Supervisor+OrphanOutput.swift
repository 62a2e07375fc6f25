import BatonCore
import BatonSystem
import Glibc
import Logging

/// The output of orphaned workers after a take-over. Each worker holds a
/// reader of its own output pipe (`WorkerContract.outputReaderFD`), so the
/// pipe outlived the crashed baton and the worker's log lines did not raise
/// SIGPIPE; this baton takes that reader and drains the pipe into its own log
/// until the orphan is gone, or the orphan would block once the pipe is full.
extension Supervisor {
    /// Takes fd `target` of the orphan and relays what comes out of it, if it
    /// is a pipe's read end (a worker that closed it, or reused the number,
    /// is left as it is: then it may die of SIGPIPE as before). The descriptor
    /// is owned from the take: one that fails a check closes when this returns.
    func relayOutput(of orphan: OrphanWorker, heldAt target: Int32) {
        let reader: OwnedDescriptor
        do {
            reader = try host.takeDescriptor(pidfd: orphan.pidfd, target: target)
        } catch {
            logger.warning("cannot take the output pipe of orphaned worker pid \(orphan.pid): \(error)")
            return
        }
        guard CBatonLinuxShim.isPipeReadEnd(reader.rawValue) else {
            logger.warning("fd \(target) of orphaned worker pid \(orphan.pid) is not the read end of a pipe: its output is not relayed")
            return
        }
        do {
            try setNonBlocking(reader.rawValue)
            try loop.register(fd: reader.rawValue, events: .readable) { [unowned self, unowned orphan] _ in self.readOrphanOutput(orphan) }
        } catch {
            logger.warning("cannot relay the output of orphaned worker pid \(orphan.pid): \(error)")
            return
        }
        orphan.ownedOutput = consume reader
    }

    /// Reads at most `outputBytesPerWakeup` per wakeup, like a worker's output.
    /// End of file comes once the orphan's whole group is gone (the last
    /// writer, and the orphan's own reader, closed).
    func readOrphanOutput(_ orphan: OrphanWorker) {
        var total = 0
        while total < Self.outputBytesPerWakeup, orphan.outputFD >= 0 {
            let n = readChunk(orphan)
            if n < 0 && errno == EINTR { continue }
            if n == 0 { closeOrphanOutput(orphan) }
            if n <= 0 { return }
            total += n
        }
    }

    /// The orphan exited: what its pipe still holds (up to its capacity: a
    /// backlog from the gap between the two batons ends with its drain
    /// lines), then the reader goes.
    func closeOrphanOutput(_ orphan: OrphanWorker) {
        guard orphan.outputFD >= 0 else { return }
        var total = 0
        while total < WorkerContract.outputPipeCapacity {
            let n = readChunk(orphan)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
        }
        orphan.outputLines.flush { emitOrphanLine(orphan, $0) }
        loop.unregister(fd: orphan.outputFD)
        orphan.outputFD = -1  // closes it
    }

    /// One read of up to 16 KiB, logged line by line; read(2)'s result.
    private func readChunk(_ orphan: OrphanWorker) -> Int {
        var buffer = [UInt8](repeating: 0, count: 16384)
        let n = buffer.withUnsafeMutableBytes { read(orphan.outputFD, $0.baseAddress, $0.count) }
        guard n > 0 else { return n }
        orphan.outputLines.append(buffer[0..<n]) { emitOrphanLine(orphan, $0) }
        return n
    }

    private func emitOrphanLine(_ orphan: OrphanWorker, _ bytes: ArraySlice<UInt8>) {
        logger.info("[orphan slot \(orphan.slot) pid \(orphan.pid)] \(String(decoding: bytes, as: UTF8.self))")
    }
}
