import BatonCore
import BatonSystem
import Glibc

/// Release retention: `baton releases` lists the release folders with what
/// retention does with each; after every successful deploy or rollback (and
/// on `baton releases --prune`) the folders past `[deploy] keep_releases` are
/// removed. Only with `[deploy] releases_directory` set: baton never deletes
/// in a folder the operator did not name, and there only folders it deployed
/// itself (recorded in the state directory), never one holding its own state,
/// runtime or config directory.
extension Supervisor {
    /// The folder listed: `releases_directory`, else the current release's parent.
    var releasesDirectory: String {
        config.deploy.releasesDirectory ?? ReleaseRetention.parent(of: releaseState.current.directory)
    }

    /// Every release folder with its mark, newest first.
    func releasesReport() throws(SystemError) -> ReleasesReport {
        // Each worker's folder as it was when it started, and as named: a link flipped since
        // names another folder now (a layout audit: retention removed the folder 3 workers ran
        // in after `ln -sfn` of the link they were deployed through).
        // Lists, not Sets: a Set of Strings takes `café` in NFC and in NFD for one (`PathKey`).
        let inUse = slots.flatMap { $0.workers.map { $0.folder ?? $0.spec.directory } }
        // A queued deploy's folder is not the next prune's (kept, not counted towards keep); nor
        // is the folder a worker's path names now, where a respawn would start (a link flipped
        // to a fresh upload: a releases re-audit saw it take the place of a release that ran).
        var waiting = queue.compactMap { $0.options?.release } + slots.flatMap { $0.workers.map(\.spec.directory) }
        if let r = operation?.target?.directory { waiting.append(r) }
        let keep = config.deploy.releasesDirectory == nil ? nil : config.deploy.keepReleases
        // Folders being removed now are gone already as far as listings go.
        // The current release is the folder its workers started in (a releases audit: a link
        // flipped to a fresh upload showed that upload as `current`, the workers' folder as
        // `in-use`); while a rollout mixes folders, the path it was deployed as, resolved now.
        let served = servingFolders()
        let currentFolder = operation == nil && served.everySlot && served.groups.count == 1 ? served.groups.first?.key.path : nil
        return try releases.listing(
            of: releasesDirectory, keep: keep, inUse: inUse, waiting: waiting, batonDirectories: batonDirectories,
            appDirectory: config.app.directory, currentFolder: currentFolder)
    }

    /// Removes the folders marked `prune`; `report` gets a progress line
    /// first, `completion` the report with what was removed.
    func pruneReleases(report: (String) -> Void = { _ in }, completion: @escaping (Result<ReleasesReport, DaemonError>) -> Void = { _ in }) {
        guard config.deploy.releasesDirectory != nil else {
            completion(.failure(DaemonError("retention is off: set [deploy] releases_directory to prune")))
            return
        }
        let before: ReleasesReport
        do {
            before = try releasesReport()
        } catch {
            logger.error("cannot list releases: \(error)")
            completion(.failure(DaemonError("cannot list releases: \(error)")))
            return
        }
        let doomed = before.releases.filter { $0.mark == .prune }.map(\.path)
        guard !doomed.isEmpty else {
            var unchanged = before
            unchanged.removed = []
            completion(.success(unchanged))
            return
        }
        let line =
            "pruning \(doomed.count) old release\(doomed.count == 1 ? "" : "s") (keep_releases = \(config.deploy.keepReleases)): "
            + doomed.map { ReleaseRetention.normalize($0).split(separator: "/").last.map(String.init) ?? $0 }.joined(separator: ", ")
        report(line)
        logger.info("\(line)")
        releases.pruningStarted(doomed)
        ReleaseFolders.removeInBackground(doomed, loop: loop) { [unowned self] removed, failures in
            self.releases.pruningFinished(doomed, removed: removed)
            for path in removed { self.logger.info("removed release folder \(path)") }
            for failure in failures { self.logger.error("\(failure)") }
            do {
                var after = try self.releasesReport()
                after.removed = removed
                completion(.success(after))
            } catch {
                completion(.failure(DaemonError("cannot list releases: \(error)")))
            }
        }
    }

    /// `baton releases [--prune]` for a control client.
    func answerReleases(_ connection: ControlConnection, prune: Bool) {
        guard prune else {
            do {
                connection.finish(.success(payload: .releases(try releasesReport())))
            } catch {
                connection.finish(.failure("cannot list releases: \(error)"))
            }
            return
        }
        pruneReleases(report: { connection.send(.progress($0)) }) { result in
            switch result {
            case .success(let report):
                let n = report.removed?.count ?? 0
                connection.finish(.success("removed \(n) release folder\(n == 1 ? "" : "s")", payload: .releases(report)))
            case .failure(let error):
                connection.finish(.failure("\(error)"))
            }
        }
    }
}

extension Supervisor {
    /// Why `directory` cannot be a release, as the config's rules for `app.directory` say (see
    /// ``DirectoryRules``): `/` or a system directory, or a folder inside baton's own state or
    /// runtime directory, or the releases directory itself (retention deletes inside it). A
    /// careless `--release /` ran the workers in `/`.
    func releaseDirectoryProblem(_ directory: String) -> String? {
        // As written, then with its symlinks resolved: a link to `/` is `/`.
        let written = DirectoryRules.normalize(directory)
        let resolved = Self.resolved(directory)
        // baton's own folders, each as written and resolved (once, not per form of `directory`).
        let own = [("app.state_directory", Self.stateDirectory(for: config)), ("app.runtime_directory", runtimeDirectory)].map {
            (key: $0.0, folder: $0.1, forms: [$0.1, Self.resolved($0.1)])
        }
        let releasesForms = config.deploy.releasesDirectory.map { [DirectoryRules.normalize($0), Self.resolved($0)] } ?? []
        for path in resolved == written ? [written] : [written, resolved] {
            let shown = path == written ? "" : " (\(path))"
            if DirectoryRules.systemDirectories.contains(path) { return "is a system directory\(shown), not a release folder" }
            for entry in own where entry.forms.contains(where: { DirectoryRules.isWithin(path, $0) }) {
                // A link to the folder itself named it twice (a layout audit: "(…/st1) (…/st1)").
                return "is inside baton's \(entry.key) (\(entry.folder))\(path == entry.folder ? "" : shown)"
            }
            if releasesForms.contains(path) { return "is deploy.releases_directory itself\(shown); a release is a folder inside it" }
        }
        return nil
    }

    /// `path` with its symlinks resolved, or as written when it cannot be.
    static func resolved(_ path: String) -> String {
        guard let pointer = realpath(path, nil) else { return DirectoryRules.normalize(path) }
        defer { free(pointer) }
        return DirectoryRules.normalize(String(cString: pointer))
    }
}
