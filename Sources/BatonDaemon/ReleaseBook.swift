import BatonCore
import BatonSystem
import Glibc
import Logging

/// The release book: the state directory as the supervisor keeps it — the current and previous
/// release, history, the deploy in progress, the release folders baton deployed and the ones
/// retention is removing, the deploys counted by outcome, and what is wrong with the state
/// directory. It is the only owner of that state: the supervisor asks it and tells it, on the
/// loop's thread, and never keeps a copy.
///
/// Its rules: a release is current only once it was persisted (``commit(_:)``); what cannot be
/// used at start-up is said loudly (``problems``: ERROR lines and `baton status`) and never
/// silently replaced; history keeps the last `StateStore.historyLimit` entries; retention only
/// ever removes folders recorded here as deployed by baton.
final class ReleaseBook {
    /// The state directory's path (for messages).
    let directory: String
    /// The current and previous release: the persisted ones, or `[app] directory` with no
    /// previous one until a deploy is committed.
    private(set) var state: ReleaseState
    /// Recent operations, oldest first.
    private(set) var history: [HistoryEntry] = []
    /// History lines the state directory did not take yet, oldest first.
    var unwrittenHistory: [HistoryEntry] = []
    /// Whose record `deploy.json` holds, when baton knows it holds one.
    enum DeployRecord {
        /// The previous baton's unfinished operation: its history line is among the unwritten
        /// ones, and the record is removed only once that line is written (a crash audit: a baton
        /// killed again while the disk was full lost the deploy from history).
        case previousBaton
        /// The running operation's (``beginOperation(_:)`` wrote it): ``finishOperation()``
        /// removes it (a re-audit: a reload or a refused deploy on a full disk removed the
        /// previous baton's record, whose line was not written yet).
        case runningOperation
    }
    var deployRecord: DeployRecord?
    /// The running operation's record (``beginOperation(_:)``), to write again with the rest.
    var runningEntry: HistoryEntry?
    /// Why the removed state directory cannot be made again, said once until it changes.
    var restoreTrouble: String?
    /// Whether `state` is in release.json (loaded from it, or committed): then a release.json
    /// removed from under baton is written back.
    var persisted = false
    /// The problem line of history that could not be written, while it could not.
    private var historyProblem: String?
    /// Release folders baton deployed (normalized, oldest first): the only ones retention removes
    /// (changed by ReleaseBook+Retention.swift only).
    var deployed: [String] = []
    /// Release folders being removed by retention now.
    var pruning: Set<PathKey> = []
    /// Problems of the state directory (unwritable, release.json unreadable, the persisted
    /// release missing), until a release is persisted again.
    private(set) var problems: [String] = []
    /// The error the last write-back of a removed or damaged release.json failed with (nil:
    /// none failed since the last that succeeded).
    var writeBackTrouble: String?
    /// What the start-up check found, until a write of history or a commit succeeds (a failed
    /// commit's problem may be its file's alone, and stays until a commit succeeds).
    private var startUpProblem: String?
    /// Problems a write failed with for want of baton's own descriptors or memory, until a write works.
    var resourceProblems: [String] = []
    /// Deploys by outcome since baton started (only ever incremented: Prometheus counters).
    private(set) var deploysByOutcome: [OperationOutcome: Int] = [:]
    /// The state directory, once opened.
    var store: (any ReleaseStore)?
    /// What ``pinPreviousRecordedThroughALink()`` last said.
    private var lastPin: String?
    let logger: Logger
    /// `[app] name`, written into every release.json (``stamped(_:)``).
    let app: String?

    /// A book on `directory` that serves `fallback` until the persisted state is loaded.
    init(directory: String, fallback: Release, logger: Logger, app: String? = nil) {
        self.directory = directory
        self.state = ReleaseState(current: fallback, previous: nil)
        self.logger = logger
        self.app = app
    }

    /// `state` as it is written: with this book's app.
    func stamped(_ state: ReleaseState) -> ReleaseState {
        var state = state
        if let app { state.app = app }
        return state
    }

    /// Whether the state directory could be opened (a deploy can only be committed then).
    var isUsable: Bool { store != nil }

    /// Loads the persisted release (it wins over `fallback`), history and the folders baton
    /// deployed from `store`; a deploy the previous baton never finished is recorded as
    /// interrupted. `releaseExists` says whether a persisted release's folder is still there.
    func load(from store: any ReleaseStore, fallback: Release, releaseExists: (String) -> Bool, now: Double) {
        self.store = store
        state = ReleaseState(current: fallback, previous: nil)
        do {
            try store.checkWritable()
        } catch {
            recordUnwritable(error, atStartUp: true)
        }
        var missing = false
        do {
            if let saved = try store.loadReleaseState() {
                if releaseExists(saved.current.directory) {
                    state = saved
                    persisted = true
                    logger.info("release from the state directory", metadata: ["release": .string(saved.current.directory)])
                } else {
                    state = ReleaseState(current: fallback, previous: saved.previous)
                    recordProblem(
                        "persisted release \(saved.current.directory) is missing: started on [app] directory \(fallback.directory)")
                }
            } else {
                missing = true
            }
        } catch {
            let copy = (try? store.keepCorruptReleaseState()).map { "; a copy is kept as \($0)" } ?? ""
            recordProblem("state unreadable: \(error)\(copy); started on [app] directory \(fallback.directory), no previous release")
        }
        for problem in store.unreadableStateFiles() { logger.warning("\(problem)") }
        history = store.loadHistory()
        deployed = store.loadDeployedReleases()
        // No release.json, but a history of releases that ran here: it was removed (a state
        // audit: `rm release.json` started baton on `[app] directory` without a word).
        if missing, let last = history.last(where: { $0.outcome == .succeeded }), last.release != fallback.directory {
            recordProblem(
                "release.json is missing from the state directory, but its history names releases that ran here (the last: \(last.release)): "
                    + "started on [app] directory \(fallback.directory); deploy that release again to run it")
        }
        recordUnfinishedDeploy(now: now)
        pinPreviousRecordedThroughALink()
    }

    /// A previous release recorded as a path that names another folder now (a link, a `..`)
    /// is pinned to the folder it names, and written so: this version records the folder the
    /// workers ran (``Supervisor/pinPreviousToTheFolderThatRan(_:)``), the version before it
    /// recorded the path as deployed. A versions audit: a release.json that version wrote with
    /// `previous` Capistrano's `current`, read after `baton upgrade`; once the link was flipped
    /// to a fresh upload, `rollback` went there (exit 0) and retention pruned the release that
    /// had run. Read before the link moves, the folder it names is the one that ran.
    func pinPreviousRecordedThroughALink() {
        guard let previous = state.previous else { return }
        let folder = Supervisor.resolved(previous.directory)
        let said: String
        if Filesystem.isSymbolicLink(previous.directory), !Filesystem.isDirectory(folder) {
            // A link that names no folder now: what it named is gone, and whatever it is pointed
            // at next never ran (a re-audit: the folder moved away, the link flipped to an upload
            // later, and `rollback` went there).
            state.previous = nil
            said = "the previous release was recorded as the link \(previous.directory), which names no folder now: no previous release"
        } else if PathKey(folder) != PathKey(previous.directory), Filesystem.isDirectory(folder) {
            state.previous?.directory = folder
            said = "the previous release was recorded as \(previous.directory), which names \(folder): pinned to that folder"
        } else {
            return
        }
        // Said and written once: `baton upgrade`'s new image reads the state from disk, then the
        // old image's (a re-audit: the line twice).
        guard said != lastPin else { return }
        lastPin = said
        logger.info("\(said)")
        guard persisted, let store else { return }
        do {
            try store.save(stamped(state))
        } catch {
            logger.warning("cannot write release.json (\(error)): until it is, \(said) only while baton runs")
        }
    }

    /// Records a problem of the state directory: an ERROR line in the log and a line in
    /// `baton status` until a release is persisted again.
    func recordProblem(_ line: String) {
        logger.error("\(line)")
        if !problems.contains(line) { problems.append(line) }
    }

    /// The state directory refused a write (`error`): deploys cannot be committed.
    /// A folder where a state file goes is named as that, not as a folder baton cannot write
    /// (left from a state audit: `state directory … not writable (rename …: Is a directory)`).
    func recordUnwritable(_ error: any Error, atStartUp: Bool = false) {
        let line = unwritableLine(error)
        if atStartUp { startUpProblem = line }
        if let errno = (error as? SystemError)?.errno, Self.transient.contains(errno) { resourceProblems.append(line) }
        recordProblem(line)
    }

    /// Why a deploy or rollback could not be committed, known before it starts: it is refused.
    struct CommitBlocked: Error, CustomStringConvertible {
        /// The line, as `baton status` has it.
        var description: String
    }

    /// Why a deploy or rollback would be refused before it starts (``beginOperation(_:)``), for
    /// its dry run (a releases re-audit: `dry run: nothing changed`, exit 0, where the deploy
    /// failed).
    func commitBlocker() -> String? { store?.releaseStateFolderError().map(unwritableLine) }

    /// What a write the state directory refused with `error` means for deploys, in one line.
    private func unwritableLine(_ error: any Error) -> String {
        if let error = error as? SystemError, error.errno == EISDIR, let path = error.subject {
            return "\(path) is a folder, not a file: deploys cannot be committed until it is removed (\(error))"
        }
        return "state directory \(directory) not writable (\(error)): deploys cannot be committed"
    }

    /// The state an older baton handed over across `baton upgrade` (nothing is read from disk).
    func restore(state: ReleaseState, deploysByOutcome: [OperationOutcome: Int]) {
        self.state = state
        self.deploysByOutcome = deploysByOutcome
        pinPreviousRecordedThroughALink()
    }

    // MARK: - Commit

    /// Persists `state` as a deploy's commit, and only then makes it current. Written on the
    /// state writer's thread (`save` fsyncs twice: seconds on a busy disk, during which the loop
    /// answered no control request, no metrics scrape and no worker, and systemd's watchdog
    /// killed baton as a deploy finished: a scale audit). `then` runs on the loop with nil once
    /// `state` is persisted and current, or with the error (nothing changed).
    func commit(_ state: ReleaseState, on loop: EventLoop, then: @escaping ((any Error)?) -> Void) {
        guard let store else {
            then(DaemonError("the state directory \(directory) is unusable"))
            return
        }
        let written = stamped(state)
        loop.offload(on: Self.writer, { Result<Void, any Error> { try store.save(written) } }) { [self] result in
            switch result {
            case .success:
                self.state = state
                persistedAgain()
                then(nil)
            case .failure(let error):
                recordUnwritable(error)
                then(error)
            }
        }
    }

    /// The release state was written: the state directory's earlier problems are resolved.
    func persistedAgain() {
        persisted = true
        if !problems.isEmpty {
            logger.info("release state persisted: the state directory's earlier problems are resolved")
            problems.removeAll()
        }
        startUpProblem = nil
        resourceProblems = []
    }

    /// The one thread the commits are written on, in order.
    static let writer = OffloadPool(maxThreads: 1)

    /// Records in the state directory that an operation runs (`entry`), so that a baton killed
    /// before it ends records it as interrupted. A deploy or rollback throws when it cannot (it
    /// could not be committed either); any other operation commits nothing and goes on, with
    /// the state directory's problem in the log and in `baton status`.
    func beginOperation(_ entry: HistoryEntry) throws {
        guard let store else {
            if entry.kind.isDeploy { throw DaemonError("the state directory \(directory) is unusable") }
            return
        }
        // A folder where release.json goes: a deploy would replace every worker, fail its commit
        // and roll them all back (a state audit). Refused before it touches one.
        if entry.kind.isDeploy, let line = commitBlocker() {
            recordProblem(line)
            throw CommitBlocked(description: line)
        }
        do {
            // The previous baton's unfinished operation is recorded in history before this one
            // takes its place in deploy.json.
            if deployRecord == .previousBaton { try writeHistory() }
            try store.beginDeploy(entry)
            deployRecord = .runningOperation
            runningEntry = entry
        } catch {
            recordUnwritable(error)
            if entry.kind.isDeploy { throw error }
        }
    }

    /// The operation recorded by ``beginOperation(_:)`` ended (whatever its outcome): its record
    /// goes, if it was written.
    func finishOperation() {
        runningEntry = nil
        guard deployRecord == .runningOperation else { return }
        deployRecord = nil
        store?.finishDeploy()
    }

    // MARK: - History

    /// Adds a line to history, in memory and in the state directory. Lines that could not be
    /// written (a full disk) are kept and written before the next one, so `history.jsonl`
    /// gets them all, in order, once there is room again.
    func append(_ entry: HistoryEntry) {
        if entry.kind == .deploy { deploysByOutcome[entry.outcome, default: 0] += 1 }
        history = HistoryEntry.kept(history + [entry], limit: StateStore.historyLimit)
        // Trimmed as history is: more lines refused than the file keeps never lose the last deploy.
        unwrittenHistory = HistoryEntry.kept(unwrittenHistory + [entry], limit: StateStore.historyLimit)
        try? writeHistory()
    }

    /// Writes the lines not written yet. A failure is a problem of the state directory (the
    /// log and `baton status`) until they are written; once they are, the previous baton's
    /// record of its unfinished operation goes.
    func writeHistory() throws(SystemError) {
        guard let store else { return }
        if !unwrittenHistory.isEmpty {
            do {
                try store.append(unwrittenHistory)
            } catch {
                let line = "cannot write history (\(unwrittenHistory.count) line(s) kept to write with the next one): \(error)"
                // Said once while it stays the same (a re-audit: the look every 5 s logged it again).
                if line != historyProblem {
                    if let historyProblem { problems.removeAll { $0 == historyProblem } }
                    historyProblem = line
                    recordProblem(line)
                }
                throw error
            }
            unwrittenHistory = []
            // A limits re-audit: a full disk found at start-up stayed shown until a deploy, although
            // space was freed and history written since; so did a moment's want of descriptors.
            let resolved = [startUpProblem].compactMap { $0 } + resourceProblems
            if !resolved.isEmpty {
                problems.removeAll { resolved.contains($0) }
                (startUpProblem, resourceProblems) = (nil, [])
                logger.info("history written: the state directory takes writes again")
            }
        }
        if let historyProblem {
            problems.removeAll { $0 == historyProblem }
            self.historyProblem = nil
            logger.info("history written: the lines the state directory refused are in it")
        }
        if deployRecord == .previousBaton {
            deployRecord = nil
            store.finishDeploy()
        }
    }

    /// At a stop: writes the history lines a full state directory refused, or says they are
    /// lost (a limits audit: they vanished without a word at a SIGTERM).
    func writeHistoryAtStop() {
        guard !unwrittenHistory.isEmpty else { return }
        let count = unwrittenHistory.count
        do {
            try writeHistory()
        } catch {
            logger.error("\(count) history line(s) the state directory refused are lost (baton stops): \(error)")
        }
    }

    /// An operation the previous baton started and never finished (killed, crashed). A
    /// reload, policy restart or roll-ahead commits nothing: interrupted. A deploy or rollback
    /// not committed: the workers start on the persisted release and history says it was
    /// interrupted. Committed (the persisted release is its release, which was not
    /// current before it), baton was killed between the commit and its last writes: the
    /// deploy succeeded, recorded so once, and its folder is one baton deployed. A redeploy
    /// of the release already current is told by the state's `committedBy` (a state written
    /// before it existed cannot tell: interrupted).
    private func recordUnfinishedDeploy(now: Double) {
        guard var entry = store?.unfinishedDeploy() else { return }
        // Removed once its line is in history (`writeHistory`), not before.
        deployRecord = .previousBaton
        defer { if deployRecord == .previousBaton, unwrittenHistory.isEmpty { try? writeHistory() } }
        // Its end is in history already: the record outlived it because the state directory
        // would not let it go (read-only; a disk audit saw such a rolled-back deploy recorded a
        // second time, `interrupted`, after a restart, and `deploy --attach` report it so).
        if let recorded = history.last(where: {
            $0.kind == entry.kind && $0.release == entry.release && $0.startedAt == entry.startedAt && $0.outcome != .inProgress
        }) {
            logger.info(
                "the \(entry.kind.rawValue) of \(entry.release) ended before baton exited (\(recorded.outcome.rawValue)): its leftover deploy.json goes")
            if entry.kind.isDeploy, recorded.outcome == .succeeded, PathKey(entry.release) == PathKey(state.current.directory) {
                recordDeployed(state.current)
            }
            return
        }
        entry.duration = max(0, now - entry.startedAt)
        let committed =
            entry.kind.isDeploy && PathKey(entry.release) == PathKey(state.current.directory)
            && (entry.previousRelease.map(PathKey.init) != PathKey(entry.release) || state.committedBy == entry.startedAt)
        guard committed else {
            entry.outcome = .interrupted
            entry.detail = "baton exited before it finished; restarted on \(state.current.directory)"
            let what = entry.kind.isDeploy ? "the \(entry.kind.rawValue) of \(entry.release)" : "a \(entry.kind.noun) on \(entry.release)"
            logger.warning("\(what) did not finish (baton exited during it): starting on \(state.current.directory)")
            append(entry)
            return
        }
        logger.warning("the \(entry.kind.rawValue) of \(entry.release) was committed before baton exited: starting on it")
        recordDeployed(state.current)
        let written = history.contains {
            $0.kind == entry.kind && $0.release == entry.release && $0.startedAt == entry.startedAt && $0.outcome == .succeeded
        }
        guard !written else { return }
        entry.outcome = .succeeded
        entry.detail = "committed; baton exited before it finished"
        append(entry)
    }
}
