import BatonCore
import FoundationEssentials
import Glibc
import Synchronization

/// The app's state directory (e.g. /var/lib/baton/APP): the current and
/// previous release (`release.json`, replaced atomically), the deploy
/// history (`history.jsonl`, one entry a line) and the operation in progress
/// (`deploy.json`, present only while a deploy, rollback, reload, policy
/// restart or roll-ahead runs: a baton that finds it at start-up was killed
/// during one) and the release folders baton deployed
/// (`deployed.json`: retention prunes only those).
public struct StateStore: Sendable {
    /// The directory.
    public let directory: String
    /// The lock ``lock()`` took (nil before, or when none could be made).
    private let held = HeldLock()

    /// Where the lock is kept: a store is a value, its lock one per open.
    private final class HeldLock: Sendable {
        let file = Mutex<LockFile?>(nil)
    }
    /// Entries kept in history.jsonl.
    public static let historyLimit = 200

    /// Uses `directory`, creating it (0750) if needed; an existing one keeps its
    /// owner and mode, and is refused when others may write in it (its files say
    /// which release runs).
    public init(directory: String) throws(DirectoryError) {
        self.directory = directory
        try Filesystem.makeDirectory(directory, mode: 0o750, refuseWritableByOthers: true)
    }

    /// Uses `directory` as it is when ``init(directory:)`` refused it for something baton may
    /// still read through (a read-only file system, an immutable folder, no write permission):
    /// its release is read, and ``checkWritable()`` says why nothing is committed. A state audit:
    /// on a read-only state directory baton started on `[app] directory`, not the persisted
    /// release, and its one line did not say so. Nil when it is no folder or is one others may
    /// write in.
    public static func readable(_ directory: String, refused: DirectoryError) -> StateStore? {
        guard case .system = refused.reason, Filesystem.isDirectory(directory), access(directory, R_OK | X_OK) == 0 else { return nil }
        return StateStore(existing: directory)
    }

    private init(existing directory: String) {
        self.directory = directory
    }

    /// The release folders baton deployed, oldest first (a missing or older file
    /// without the list: none).
    public func loadDeployedReleases() -> [String] {
        guard let text = ProcFS.read(directory + "/deployed.json") else { return [] }
        return (try? JSONDecoder().decode(DeployedReleases.self, from: Data(text.utf8)))?.folders ?? []
    }

    /// Replaces the list of release folders baton deployed (atomically).
    public func saveDeployedReleases(_ folders: [String]) throws(SystemError) {
        try writeJSON(DeployedReleases(folders: folders), to: "deployed.json", pretty: true, what: "deployed releases", durable: false)
    }

    /// The persisted release state; nil when none was ever written. A file that exists but
    /// cannot be read or decoded (truncated, corrupt) throws: it is never taken for a fresh start.
    public func loadReleaseState() throws(SystemError) -> ReleaseState? {
        let path = directory + "/release.json"
        guard let text = ProcFS.read(path) else {
            if errno == ENOENT { return nil }
            throw SystemError("read", subject: path)
        }
        do {
            return try JSONDecoder().decode(ReleaseState.self, from: Data(text.utf8))
        } catch {
            throw SystemError("decode", errno: EBADMSG, subject: "\(path) (\(text.utf8.count) bytes, not a release state)")
        }
    }

    /// The `[app] name` the release.json in `directory` records: nil when there is none, it
    /// cannot be read, or an older baton wrote it (nothing is made or locked: a read for
    /// check-config and a reload's warning).
    public static func recordedApp(in directory: String) -> String? {
        struct Recorded: Decodable { var app: String? }
        guard let text = ProcFS.read(directory + "/release.json") else { return nil }
        return (try? JSONDecoder().decode(Recorded.self, from: Data(text.utf8)))?.app
    }

    /// Keeps a copy of an unreadable release.json as release.json.corrupt (for whoever
    /// investigates; the next successful deploy replaces release.json itself).
    public func keepCorruptReleaseState() throws(SystemError) -> String {
        let path = directory + "/release.json"
        guard let text = ProcFS.read(path) else { throw SystemError("read", subject: path) }
        try writeAtomically(path + ".corrupt", Array(text.utf8), durable: false)
        return path + ".corrupt"
    }

    /// Takes the directory's lock (`.lock`, ``LockFile``) for the rest of this process's life;
    /// throws `inUse` when another process holds it (an operator audit: two batons given one
    /// state directory both started, each overwrote the other's `release.json`, and one's
    /// retention removed the other's previous release). A lock file that cannot be made (a
    /// read-only directory) is no refusal: the directory's own problem is reported where it is
    /// used. The lock lasts as long as this process (or until its execve: `baton upgrade`'s
    /// new image takes it again), or until `unlock` (a store replaced by the one of a
    /// directory made again).
    public func lock() throws(DirectoryError) {
        let file: LockFile?
        do {
            file = try LockFile.take(directory + "/.lock")
        } catch {
            switch error {
            case .held(let pid): throw DirectoryError(path: directory, reason: .inUse(pid: pid))
            case .system(let error): throw DirectoryError(path: directory, reason: .system(error))
            }
        }
        guard let file else { return }
        held.file.withLock { $0 = file }
        removeStaleTemporaries()
    }

    /// Whether release.json is there.
    public func hasReleaseState() -> Bool { access(directory + "/release.json", F_OK) == 0 }

    /// The error a commit would meet when a folder is where release.json goes (rename onto it
    /// fails with EISDIR); nil otherwise.
    public func releaseStateFolderError() -> SystemError? {
        let path = directory + "/release.json"
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { return nil }
        return SystemError("rename", errno: EISDIR, subject: path)
    }

    /// Closes the lock's descriptor (the directory it was taken in was removed, or replaced).
    public func unlock() { held.file.withLock { $0 = nil } }

    /// Whether the directory's lock is no longer this store's: the directory (or `.lock`) was
    /// removed, or replaced, possibly by another baton that made it again and locked it (a
    /// re-audit: a second baton started within the seconds after `rm -rf`, and both committed
    /// into it). Without a lock of its own (a read-only directory), only a removal counts.
    public func lockLost() -> Bool {
        guard let file = held.file.withLock({ $0 }) else {
            var here = stat()
            return stat(directory, &here) != 0 && errno == ENOENT
        }
        return !file.isStillAtItsPath
    }

    /// Removes what `AtomicFile.replace` of another process left half written (a baton killed
    /// during a write: `release.json.tmp.PID`, a re-audit). Only under the lock: no other
    /// baton writes here, and this process's own are kept (an upgrade's image is the same pid).
    private func removeStaleTemporaries() {
        for name in Filesystem.entryNames(of: directory) ?? [] {
            guard let writer = AtomicFile.writer(ofTemporary: name), writer != getpid() else { continue }
            unlink(directory + "/" + name)
        }
    }

    /// Throws unless a file can be created in the directory and written (a read-only mount, a
    /// directory owned by someone else, a full disk): deploys could not be committed. A limits
    /// audit: a full tmpfs still takes an empty file, so the check writes a few bytes too.
    public func checkWritable() throws(SystemError) {
        let probe = directory + "/.write-check.\(getpid())"
        let fd = try syscall("open", subject: directory) { open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        defer {
            close(fd)
            unlink(probe)
        }
        let bytes = Array("baton: can this directory take a write?\n".utf8)
        let written = try syscall("write", subject: directory) { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        if written < bytes.count { throw SystemError("write", errno: ENOSPC, subject: directory) }
    }

    /// Writes the release state atomically and durably (temp file, fsync, rename, fsync dir):
    /// it says which release runs after a reboot. The fsyncs take seconds on a busy disk (6 to
    /// 16 s measured under a parallel build): the supervisor calls this off its event loop.
    public func save(_ state: ReleaseState) throws(SystemError) {
        try writeJSON(state, to: "release.json", pretty: true, what: "release state", durable: true)
    }

    /// Appends history entries, oldest first, in one write, trimming the file to the last
    /// `historyLimit` (the last deploy or rollback kept: ``HistoryEntry/kept(_:limit:)``).
    public func append(_ new: [HistoryEntry]) throws(SystemError) {
        let kept = HistoryEntry.kept(loadHistory() + new, limit: Self.historyLimit)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes: [UInt8] = []
        for e in kept {
            guard let data = try? encoder.encode(e) else { continue }
            bytes += Array(data) + [0x0A]
        }
        try writeAtomically(directory + "/history.jsonl", bytes, durable: false)
    }

    /// History, oldest first (unreadable lines are skipped).
    public func loadHistory() -> [HistoryEntry] {
        guard let text = ProcFS.read(directory + "/history.jsonl") else { return [] }
        let decoder = JSONDecoder()
        return text.split(separator: "\n").compactMap { try? decoder.decode(HistoryEntry.self, from: Data($0.utf8)) }
    }

    /// What of history.jsonl, deployed.json and deploy.json could not be read, one line each
    /// (`loadHistory`, `loadDeployedReleases` and `unfinishedDeploy` skip it): a disk audit cut
    /// history's last line short, and baton started without a word, `deploy --attach` then
    /// answering with an older deploy.
    public func unreadableStateFiles() -> [String] {
        let decoder = JSONDecoder()
        func decodes<T: Decodable>(_ type: T.Type, _ text: Substring) -> Bool { (try? decoder.decode(type, from: Data(text.utf8))) != nil }
        // Each file read once: what its unreadable content means, or, when it cannot be read at
        // all (a folder in its place, an I/O error: a state audit saw 16 history lines go
        // without a word, and retention's order with them), what baton takes it for.
        let deployed = "taken as empty (retention keeps every release folder it does not know)"
        let deploy = "the operation it recorded gets no history line"
        let files: [(name: String, effect: String, content: (String) -> String?)] = [
            (
                "history.jsonl", "taken as an empty history",
                { text in
                    let bad = text.split(separator: "\n").filter { !decodes(HistoryEntry.self, $0) }.count
                    return bad > 0 ? ": \(bad) unreadable line(s) skipped (a write cut short?); they go at its next rewrite" : nil
                }
            ),
            ("deployed.json", deployed, { decodes(DeployedReleases.self, $0[...]) ? nil : " is unreadable: \(deployed)" }),
            ("deploy.json", deploy, { decodes(HistoryEntry.self, $0[...]) ? nil : " is unreadable: \(deploy)" }),
        ]
        var found: [String] = []
        for file in files {
            let path = directory + "/" + file.name
            if let text = ProcFS.read(path) {
                if let problem = file.content(text) { found.append(path + problem) }
            } else if errno != ENOENT {
                found.append("\(path) cannot be read (\(String(cString: strerror(errno)))): \(file.effect)")
            }
        }
        return found
    }

    /// Records the deploy that starts now (its history entry, outcome
    /// "in-progress"); `finishDeploy()` removes it when the deploy ends.
    public func beginDeploy(_ entry: HistoryEntry) throws(SystemError) {
        try writeJSON(entry, to: "deploy.json", pretty: false, what: "deploy in progress", durable: false)
    }

    /// The deploy ended (whatever its outcome, which history records).
    public func finishDeploy() {
        unlink(directory + "/deploy.json")
    }

    /// The deploy a previous baton started and never finished (it crashed or was killed); nil
    /// when there is none. It stays in the directory until `finishDeploy()`: the caller removes
    /// it once history records it.
    public func unfinishedDeploy() -> HistoryEntry? {
        guard let text = ProcFS.read(directory + "/deploy.json") else { return nil }
        return try? JSONDecoder().decode(HistoryEntry.self, from: Data(text.utf8))
    }

    /// `value` as one JSON document in `name`, replaced atomically.
    private func writeJSON<T: Encodable>(_ value: T, to name: String, pretty: Bool, what: String, durable: Bool) throws(SystemError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { throw SystemError("encode \(what)", errno: EINVAL) }
        try writeAtomically(directory + "/" + name, Array(data) + [0x0A], durable: durable)
    }

    /// Replaces `path` atomically (a reader, or a baton started after a crash of baton, finds
    /// the old content or the new), readable by baton's group only. `durable`: it survives a
    /// crash of the host too (`release.json`); history, the deployed list and the operation in
    /// progress are written on the event loop without fsync, and a power loss may lose their
    /// last change.
    private func writeAtomically(_ path: String, _ bytes: [UInt8], durable: Bool) throws(SystemError) {
        try AtomicFile.replace(path, with: bytes, mode: 0o640, durable: durable)
    }
}

/// `deployed.json`: the release folders baton deployed; a missing `folders` is an empty list.
private struct DeployedReleases: Codable {
    var folders: [String]

    init(folders: [String]) { self.folders = folders }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        folders = try c.decodeIfPresent([String].self, forKey: .folders) ?? []
    }
}

/// Host memory figures from /proc/meminfo (bytes).
public enum HostMemory {
    /// MemAvailable, or nil if unreadable.
    public static func available() -> UInt64? {
        guard let text = ProcFS.read("/proc/meminfo") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = UInt64(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}
