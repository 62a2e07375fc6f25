import BatonCore
import BatonSystem
import Glibc

/// The output of strays that outlive their worker. An escaped child (`setsid` and the like)
/// that baton lets run, as systemd lets a service's strays run, writes to its worker's output
/// pipe: closed when the worker was reaped, its lines went nowhere, and one without the
/// worker's reader (`WorkerContract.outputReaderFD`; Python's `subprocess` closes it) died of
/// SIGPIPE at its first line (an output audit). The pipe is read on until every writer is gone.
final class StrayOutput: OutputChannel, OutputSource {
    let outputPrefix: String

    init(reader: consuming OwnedDescriptor, prefix: String) {
        outputPrefix = prefix
        super.init()
        ownedOutput = consume reader
    }
}

extension Supervisor {
    /// When escaped children of `worker` (gone now) still hold its output pipe, its pipe is
    /// read on under their name until they are gone; true then. What the pipe held already is
    /// logged as the worker's first.
    func handOutputToStrays(of worker: Worker) -> Bool {
        guard worker.outputFD >= 0, let inode = Self.inode(of: worker.outputFD) else { return false }
        // Their children too (a re-audit: a stray's child printing while the stray itself had
        // closed its stdout died of SIGPIPE).
        let holders = escapedChildren().flatMap { host.processes.tree(of: $0) }.filter { host.processes.pipes(of: $0).contains(inode) }
        guard !holders.isEmpty else { return false }
        let copy = fcntl(worker.outputFD, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { return false }
        // The worker's own last lines (and whatever a stray wrote before it exited).
        closeOutput(worker, draining: WorkerContract.outputPipeCapacity)
        let strays = StrayOutput(
            reader: OwnedDescriptor(copy), prefix: "[stray pid \(holders.map(String.init).joined(separator: ",")) of slot \(worker.slot) pid \(worker.pid)]")
        guard watchStrayOutput(strays) else { return true }
        logger.info(
            "\(Self.processes(holders)) of slot \(worker.slot) outlived worker pid \(worker.pid) and still hold its output: their lines are logged as \(strays.outputPrefix)"
        )
        return true
    }

    /// Reads `strays`' pipe as it fills until every writer is gone (after a worker's exit, or
    /// as the previous image handed it over at `baton upgrade`); false when the loop would not
    /// take it (dropped then, which closes it).
    @discardableResult
    func watchStrayOutput(_ strays: StrayOutput) -> Bool {
        do {
            try loop.register(fd: strays.outputFD, events: .readable) { [unowned self, unowned strays] _ in
                self.readOutput(strays)
                if strays.outputFD < 0 { self.strayOutputs.removeAll { $0 === strays } }
            }
        } catch {
            return false
        }
        strayOutputs.append(strays)
        return true
    }
}
