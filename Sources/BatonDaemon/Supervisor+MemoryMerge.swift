import BatonCore
import Glibc

/// `memory.mergeable`: workers are marked mergeable at spawn (SpawnRequest.memoryMerge);
/// here, the one-time messages when that cannot save anything, and the status line.
extension Supervisor {
    /// At start: with `memory.mergeable` on and the host's ksmd not running, one warning
    /// (marking still happens: ksmd may be switched on later).
    func announceMemoryMerge() {
        guard config.memory.mergeable, let note = MemoryMerge.daemonNote(run: host.memory.ksmRun()) else { return }
        logger.warning("\(note)")
    }

    /// A worker's spawn reported that the kernel refused PR_SET_MEMORY_MERGE: the worker runs
    /// unmerged; logged once (every later worker is refused the same way).
    func memoryMergeRefused(errno code: Int32) {
        let line = MemoryMerge.refused(errno: code, errorText: String(cString: strerror(code)))
        guard memoryMonitor.mergeRefused(line) else { return }
        logger.warning("\(line)")
    }

    /// The status line of `memory.mergeable` (nil when it is off): ksmd's state read now, and
    /// why nothing merges, if so.
    func ksmStatus() -> KSMStatus? {
        guard config.memory.mergeable else { return nil }
        let run = host.memory.ksmRun()
        let notes = memoryMonitor.mergeNotes(run: run)
        return KSMStatus(run: run?.split(whereSeparator: \.isWhitespace).first.map(String.init), notes: notes)
    }
}
