/// One folder found in the releases directory.
public struct ReleaseFolder: Sendable, Equatable {
    /// The folder's name (the release id).
    public var name: String
    /// Its absolute path.
    public var path: String
    /// Its modification time, seconds since the epoch.
    public var modifiedAt: Double

    /// Creates a folder.
    public init(name: String, path: String, modifiedAt: Double) {
        self.name = name
        self.path = path
        self.modifiedAt = modifiedAt
    }
}

/// One line of `baton releases`.
public struct ReleaseListing: Codable, Sendable, Equatable {
    /// What retention does with a folder.
    public enum Mark: String, Codable, Sendable, Equatable {
        /// The release serving now: never removed.
        case current
        /// The one `baton rollback` goes to: never removed.
        case previous
        /// A worker still runs in it: never removed.
        case inUse = "in-use"
        /// No deploy or rollback of baton's went to it (copied there by hand, the first
        /// release from `[app] directory`, another app's data): never removed.
        case notDeployed = "not-deployed"
        /// It is, or holds, baton's state, runtime or config directory: never removed.
        case batonDirectory = "baton-dir"
        /// `[app] directory`, which baton starts on when no release is persisted: never
        /// removed, deployed or not (an operator audit: once pruned, a baton whose
        /// release.json was unreadable could not start).
        case appDirectory = "app-dir"
        /// Among the newest `keep_releases` (or retention is off).
        case kept
        /// Older than the newest `keep_releases`: the next prune removes it.
        case prune
    }

    /// The folder's name.
    public var name: String
    /// Its absolute path.
    public var path: String
    /// See ``Mark``.
    public var mark: Mark
    /// When it was last deployed, or else modified (seconds since the epoch): the age shown.
    public var lastUsedAt: Double

    enum CodingKeys: String, CodingKey {
        case name, path, mark
        case lastUsedAt = "last_used_at"
    }

    /// Creates a line.
    public init(name: String, path: String, mark: Mark, lastUsedAt: Double) {
        self.name = name
        self.path = path
        self.mark = mark
        self.lastUsedAt = lastUsedAt
    }
}

/// The payload of `baton releases` (and of a prune: what it removed).
public struct ReleasesReport: Codable, Sendable, Equatable {
    /// The folder listed: `[deploy] releases_directory`, else the current release's parent.
    public var directory: String
    /// `[deploy] keep_releases` when retention is on (`releases_directory` set); nil: never pruned.
    public var keep: Int?
    /// Newest first.
    public var releases: [ReleaseListing]
    /// Paths a prune removed (prune replies only).
    public var removed: [String]?

    /// Creates a report.
    public init(directory: String, keep: Int?, releases: [ReleaseListing], removed: [String]? = nil) {
        self.directory = directory
        self.keep = keep
        self.releases = releases
        self.removed = removed
    }
}

extension ReleasesReport {
    /// The table `baton releases` prints: a header line, then one line per
    /// folder, newest first, with its mark and how long ago it was last used. The columns
    /// are 10 wide, or wider when a value needs it (`not-deployed`; an operator audit found
    /// those rows out of line).
    public func table(now: Double) -> String {
        let retention = keep.map { "keep_releases = \($0)" } ?? "retention off (no [deploy] releases_directory)"
        // A folder named with a newline or an escape split its row or coloured the terminal (a
        // re-audit): control characters show as `?`, as in a deploy's refusal.
        let rows = releases.map { [$0.mark.rawValue, StatusReport.age(now - $0.lastUsedAt), ControlProtocol.withControlsShown($0.name)] }
        let header = "\(directory): \(releases.count) release\(releases.count == 1 ? "" : "s"), \(retention)"
        return ([header] + TextColumns.lines([["MARK", "AGE", "RELEASE"]] + rows, minimumWidths: [8, 8])).joined(separator: "\n")
    }
}

/// A path as the kernel compares it, byte for byte (trailing slashes dropped): Swift's String
/// equality, and so a Set or Dictionary of Strings, takes canonically equivalent Unicode as
/// equal, `café` in NFC and in NFD, two different folders on Linux (a names audit: retention
/// removed a folder baton never deployed, the NFD twin of one it had, and a redeploy was
/// taken for the other's).
public struct PathKey: Hashable, Sendable {
    /// The path, normalized (``ReleaseRetention/normalize(_:)``).
    public let path: String
    private let bytes: [UInt8]

    /// The key of `path`.
    public init(_ path: String) {
        self.path = ReleaseRetention.normalize(path)
        bytes = Array(self.path.utf8)
    }

    public static func == (a: PathKey, b: PathKey) -> Bool { a.bytes == b.bytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}

/// Which release folders to keep: the newest `keep` by last use, and always
/// the current release, the previous one and any folder a worker still runs in.
/// Only folders baton deployed are ever removed.
public enum ReleaseRetention {
    /// `path` without trailing slashes (and "/" for the root), so that
    /// "/srv/a/r1/" and "/srv/a/r1" are the same release.
    public static func normalize(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }

    /// The folders `path` goes through before a `..` (`/r/H` of `/r/H/../J`), its links followed
    /// as the kernel follows them (`readlink` gives a link's target, nil for anything else): the
    /// kernel walks them, so they must stay for the path to name its folder, though its folder
    /// (`/r/J`) is elsewhere. A releases re-audit: retention removed H, and the current
    /// release's next worker failed on chdir; a re-audit 2: the same with the `..` in the target
    /// of a link (`current` → `releases/x/../z`). At most 40 links, as the kernel.
    public static func foldersPassedThrough(_ path: String, readlink: (String) -> String? = { _ in nil }) -> [String] {
        var pending = path.split(separator: "/").map(String.init)
        var stack: [String] = []
        var passed: [String] = []
        var links = 0
        while !pending.isEmpty {
            let part = pending.removeFirst()
            if part == "." { continue }
            if part == ".." {
                if !stack.isEmpty { passed.append("/" + stack.joined(separator: "/")) }
                _ = stack.popLast()
                continue
            }
            if links < 40, let target = readlink("/" + (stack + [part]).joined(separator: "/")) {
                links += 1
                if target.hasPrefix("/") { stack = [] }
                pending = target.split(separator: "/").map(String.init) + pending
                continue
            }
            stack.append(part)
        }
        return passed
    }

    /// The parent folder of `path` ("/" for a top-level folder).
    public static func parent(of path: String) -> String {
        let p = normalize(path)
        guard let slash = p.lastIndex(of: "/"), slash != p.startIndex else { return "/" }
        return String(p[..<slash])
    }

    /// When each release was last the goal of a successful deploy or rollback
    /// (its end time), by normalized path.
    public static func lastDeployed(_ history: [HistoryEntry]) -> [PathKey: Double] {
        var times: [PathKey: Double] = [:]
        for e in history where e.kind.isDeploy && e.outcome == .succeeded {
            let path = PathKey(e.folder ?? e.release)
            times[path] = max(times[path] ?? 0, e.startedAt + e.duration)
        }
        return times
    }

    /// The rank of each release's last successful deploy or rollback in `history` (written in
    /// the order they happened; higher is later), by normalized path: what "newest" means for
    /// the folders deployed, whatever the wall clock said then (a time audit: a deploy made
    /// while the clock was a day ahead stayed "newest" for that day, and retention removed a
    /// folder deployed 10 s before the current one).
    public static func deployOrder(_ history: [HistoryEntry]) -> [PathKey: Int] {
        var order: [PathKey: Int] = [:]
        for (rank, e) in history.enumerated() where e.kind.isDeploy && e.outcome == .succeeded { order[PathKey(e.folder ?? e.release)] = rank }
        return order
    }

    /// Marks every folder, newest first.
    ///
    /// - Parameters:
    ///   - folders: The folders of the releases directory.
    ///   - current: The current release's directory.
    ///   - previous: The previous release's directory, if any.
    ///   - inUse: Directories workers run in now.
    ///   - waiting: Directories a running or queued operation will start workers in: kept
    ///     (marked in use) but not counted towards `keep`, which is about releases that ran (a
    ///     chaos audit: a queued deploy's folder took the place of one deployed 4 s before).
    ///   - lastDeployed: From ``lastDeployed(_:)``; a folder's age is its last
    ///     deploy or its modification time, whichever is later (shown).
    ///   - deployOrder: From ``deployOrder(_:)``: folders in it are newer than those not in
    ///     it, and ordered by it; the others by age.
    ///   - keep: How many folders to keep, the protected ones (current, previous,
    ///     in use) counted first whatever their age; nil keeps all.
    ///   - deployed: The folders baton deployed (recorded in its state); the
    ///     others are marked `.notDeployed` and do not count towards `keep`. nil:
    ///     every folder is eligible.
    ///   - batonDirectories: baton's state, runtime and config directories: a folder
    ///     that is one of them or holds one is marked `.batonDirectory`.
    ///   - appDirectory: `[app] directory`, marked `.appDirectory`.
    /// - Returns: One listing per folder; those marked `.prune` may be removed.
    public static func plan(
        folders: [ReleaseFolder], current: String, previous: String?, inUse: [String], waiting: [String] = [],
        lastDeployed: [PathKey: Double], deployOrder: [PathKey: Int] = [:], keep: Int?, deployed: [String]? = nil, batonDirectories: [String] = [],
        appDirectory: String? = nil
    ) -> [ReleaseListing] {
        let appDirectory = appDirectory.map(PathKey.init)
        let current = PathKey(current)
        let previous = previous.map(PathKey.init)
        let inUse = Set(inUse.map(PathKey.init))
        let waiting = Set(waiting.map(PathKey.init)).subtracting(inUse)
        let deployed = deployed.map { Set($0.map(PathKey.init)) }
        let dated: [(folder: ReleaseFolder, time: Double, rank: Int)] = folders.map { f in
            let deployedAt: Double = lastDeployed[PathKey(f.path)] ?? 0
            return (f, max(f.modifiedAt, deployedAt), deployOrder[PathKey(f.path)] ?? -1)
        }
        let sorted = dated.sorted { a, b in
            if a.rank != b.rank { return a.rank > b.rank }
            return a.time != b.time ? a.time > b.time : a.folder.name > b.folder.name
        }.map { ($0.folder, $0.time) }
        // A folder holding a release (`releases/42` of `releases/42/backend`) is that release's: an
        // operator-release audit saw retention remove the folder of the previous release and of
        // the one the workers ran in, named one level down.
        func holds(_ folder: PathKey, _ release: PathKey?) -> Bool {
            guard let release else { return false }
            // As bytes, as PathKey compares (a String's hasPrefix takes NFC and NFD for one).
            return release == folder || release.path.utf8.starts(with: (folder.path + "/").utf8)
        }
        func protectedMark(_ path: PathKey) -> ReleaseListing.Mark? {
            if holds(path, current) { return .current }
            if holds(path, previous) { return .previous }
            return inUse.contains { holds(path, $0) } ? .inUse : nil
        }
        func untouchableMark(_ path: PathKey) -> ReleaseListing.Mark? {
            if path == appDirectory { return .appDirectory }
            if batonDirectories.contains(where: { DirectoryRules.isWithin($0, path.path) }) { return .batonDirectory }
            if let deployed, !deployed.contains(path) { return .notDeployed }
            return nil
        }
        // Protected folders count towards `keep` whatever their age; the
        // newest of the others fill what is left.
        var kept = sorted.filter { protectedMark(PathKey($0.0.path)) != nil }.count
        var listings: [ReleaseListing] = []
        for (folder, time) in sorted {
            let path = PathKey(folder.path)
            var mark = protectedMark(path) ?? (waiting.contains { holds(path, $0) } ? .inUse : nil) ?? untouchableMark(path) ?? .kept
            if mark == .kept {
                if let keep, kept >= keep { mark = .prune } else { kept += 1 }
            }
            listings.append(ReleaseListing(name: folder.name, path: path.path, mark: mark, lastUsedAt: time))
        }
        return listings
    }
}
