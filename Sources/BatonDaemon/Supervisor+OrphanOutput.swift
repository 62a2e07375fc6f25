import BatonCore
import BatonSystem
import Glibc
import Logging

/// The output of orphaned workers after a take-over. Each worker holds a
/// reader of its own output pipe (`WorkerContract.outputReaderFD`), so the
/// pipe outlived the crashed baton and the worker's log lines did not raise
/// SIGPIPE; this baton takes that reader and drains the pipe into its own log
/// until the orphan is gone, or the orphan would block once the pipe is full.
/// It is read and closed as a worker's output is (`readOutput`, `closeOutput`).
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
            try loop.register(fd: reader.rawValue, events: .readable) { [unowned self, unowned orphan] _ in self.readOutput(orphan) }
        } catch {
            logger.warning("cannot relay the output of orphaned worker pid \(orphan.pid): \(error)")
            return
        }
        orphan.ownedOutput = consume reader
    }
}
