import BatonCore
import BatonSystem
import Glibc
import Logging

/// The state directory, or its release.json, removed or replaced from under a running baton:
/// what the release book knows is written back (looked at with the runtime files, every 5 s).
extension ReleaseBook {
    /// The state directory removed while baton runs (`rm -rf`, a clean-up of /var/lib) is made
    /// again through `reopen` (which takes its lock), and what baton knows is written back: the
    /// current and previous release, the folders it deployed, history and the running
    /// operation's record, so that a restart comes up on the same release. Another baton that
    /// took the directory meanwhile keeps it: this one stops writing there (deploys cannot be
    /// committed) and says so. Until then, every write failed and a restart lost the release.
    func restoreIfGone(reopen: () throws(DirectoryError) -> any ReleaseStore, on loop: EventLoop) {
        guard let lost = store, lost.lockLost() else {
            writeBackReleaseStateIfRemoved(on: loop)
            // Lines a write refused are written now, not with the next operation's (a starved
            // audit: after a reload while descriptors ran out, status said `not writable (… Too
            // many open files)` and `cannot write history` long after they came back).
            if !unwrittenHistory.isEmpty { try? writeHistory() }
            return
        }
        let fresh: any ReleaseStore
        do {
            fresh = try reopen()
        } catch {
            let line = "state directory \(directory) was removed or replaced while baton ran and cannot be made again (\(error)): deploys cannot be committed"
            if case .inUse = error.reason {
                lost.unlock()
                store = nil
            }
            if line != restoreTrouble { recordProblem(line) }
            restoreTrouble = line
            return
        }
        restoreTrouble = nil
        lost.unlock()
        store = fresh
        let (state, deployed, history, running) = (stamped(state), deployed, history, runningEntry)
        loop.offload(
            on: Self.writer,
            {
                Result<Void, any Error> {
                    try fresh.save(state)
                    try fresh.saveDeployedReleases(deployed)
                    try fresh.append(history)
                    if let running { try fresh.beginDeploy(running) }
                }
            }
        ) { [self] result in
            switch result {
            case .success:
                unwrittenHistory.removeAll { line in history.contains { $0.startedAt == line.startedAt && $0.kind == line.kind } }
                if deployRecord == .previousBaton { deployRecord = nil }
                let what = "the current release \(state.current.directory), \(history.count) history line(s) and \(deployed.count) deployed folder(s)"
                logger.warning("state directory \(directory) (or its lock) was removed while baton ran: made it again and wrote back \(what)")
            case .failure(let error):
                recordUnwritable(error)
            }
        }
    }

    /// Errors of a read that say nothing of the file read.
    static let transient: Set<Int32> = [EMFILE, ENFILE, ENOMEM, EINTR, EAGAIN]

    /// release.json alone removed (a re-audit: a restart then came up on `[app] directory`, and
    /// the previous release was lost), or damaged (a state audit: not noticed until a restart,
    /// which came up on `[app] directory`): the state baton runs is written back, a damaged
    /// file kept beside it.
    private func writeBackReleaseStateIfRemoved(on loop: EventLoop) {
        guard persisted, let store else { return }
        let what: String
        do {
            // Nil: no file (a readable one is left as it is, a hand edit included, and what kept
            // it from being written back is over).
            guard try store.loadReleaseState() == nil else {
                writeBackTroubleEnded()
                return
            }
            what = "was removed"
        } catch  where Self.transient.contains(error.errno) {
            // Baton short of descriptors or memory for a moment says nothing of the file (a CI
            // audit: EMFILE took it for damaged, the write-back failed the same way, and status
            // said "not writable" until the next deploy): the next look reads it again.
            return
        } catch {
            let copy = (try? store.keepCorruptReleaseState()).map { "; kept as \($0)" } ?? ""
            what = "was damaged (\(error)\(copy))"
        }
        persisted = false  // until written: one write at a time
        let state = stamped(state)
        loop.offload(on: Self.writer, { Result<Void, any Error> { try store.save(state) } }) { [self] result in
            // Tried again at the next look until written (a re-audit: a folder put in its place,
            // then removed, left release.json unwritten for good, and a restart on [app]
            // directory), said once per error.
            persisted = true
            switch result {
            case .success:
                logger.warning("\(directory)/release.json \(what) while baton ran: wrote back the current release \(state.current.directory)")
                writeBackTroubleEnded()
            case .failure(let error):
                if "\(error)" != writeBackTrouble { recordUnwritable(error) }
                writeBackTrouble = "\(error)"
            }
        }
    }

    /// A write-back that had failed is no longer needed (written, or the file reads well): the
    /// problems it raised are resolved.
    private func writeBackTroubleEnded() {
        guard writeBackTrouble != nil else { return }
        writeBackTrouble = nil
        persistedAgain()
    }
}
