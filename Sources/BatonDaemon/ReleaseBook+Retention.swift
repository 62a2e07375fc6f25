import BatonCore
import BatonSystem

/// Retention's part of the release book: the folders baton deployed, the ones being removed,
/// and the listing `baton releases` prints.
extension ReleaseBook {
    /// Records `release`'s folder as one baton deployed (persisted), so that retention may
    /// prune it once it is old.
    func recordDeployed(_ release: Release) {
        // The folder it names now, not the name: a link (Capistrano's `current`) later flipped to
        // a fresh upload made that upload "deployed", and retention removed it (a layout audit,
        // 2 of 2).
        let key = PathKey(Supervisor.resolved(release.directory))
        guard !deployed.contains(where: { PathKey($0) == key }) else { return }
        deployed.append(key.path)
        saveDeployed()
    }

    /// Whether retention is removing `path` now.
    func isBeingPruned(_ path: String) -> Bool { pruning.contains(PathKey(path)) }

    /// Every folder in `folder` with what retention does with it, newest first (folders being
    /// removed now are left out). `inUse`: folders a worker or an operation still needs.
    /// `currentFolder`: the folder the current release's workers started in, when the path it
    /// was deployed as (a link) may name another now.
    /// Every path is compared as the folder it names (`realpath`), not as text: a release
    /// deployed as `releases//r9`, through a symlinked folder or a symlinked releases directory
    /// is the folder it runs in (an operator audit: retention removed the current release, and
    /// the previous one a rollback then needed, spelled otherwise).
    func listing(
        of folder: String, keep: Int?, inUse: [String], waiting: [String] = [], batonDirectories: [String], appDirectory: String? = nil,
        currentFolder: String? = nil
    ) throws(SystemError)
        -> ReleasesReport
    {
        let resolve = Supervisor.resolved
        let folders = try ReleaseFolders.scan(folder).map { ReleaseFolder(name: $0.name, path: resolve($0.path), modifiedAt: $0.modifiedAt) }
            .filter { !pruning.contains(PathKey($0.path)) }
        // A path that is itself a link names whatever it points to now, not what was deployed
        // through it (recorded so before baton recorded the folder): it counts for nothing.
        func resolvedKeys<Value: Comparable>(_ byPath: [PathKey: Value]) -> [PathKey: Value] {
            Dictionary(byPath.filter { !Filesystem.isSymbolicLink($0.key.path) }.map { (PathKey(resolve($0.key.path)), $0.value) }, uniquingKeysWith: max)
        }
        // The folders a kept release's path goes through before a `..` stay too (kept, not counted).
        let named = [state.current.directory] + (state.previous.map { [$0.directory] } ?? []) + inUse + waiting
        let waiting = waiting + named.flatMap { ReleaseRetention.foldersPassedThrough($0, readlink: Filesystem.linkTarget) }
        let lastDeployed = resolvedKeys(ReleaseRetention.lastDeployed(history))
        let deployOrder = resolvedKeys(ReleaseRetention.deployOrder(history))
        let listings = ReleaseRetention.plan(
            folders: folders, current: currentFolder ?? resolve(state.current.directory), previous: state.previous.map { resolve($0.directory) },
            inUse: inUse.map(resolve), waiting: waiting.map(resolve), lastDeployed: lastDeployed, deployOrder: deployOrder, keep: keep,
            deployed: deployed.filter { !Filesystem.isSymbolicLink($0) }.map(resolve),
            batonDirectories: batonDirectories, appDirectory: appDirectory.map(resolve))
        return ReleasesReport(directory: folder, keep: keep, releases: listings)
    }

    /// Retention starts removing `paths`.
    func pruningStarted(_ paths: [String]) { pruning.formUnion(paths.map(PathKey.init)) }

    /// Retention is done with `paths`; `removed` are gone (and forgotten as deployed).
    func pruningFinished(_ paths: [String], removed: [String]) {
        pruning.subtract(paths.map(PathKey.init))
        let gone = Set(removed.map(PathKey.init))
        let kept = deployed.filter { !gone.contains(PathKey($0)) }
        guard kept.count != deployed.count else { return }
        deployed = kept
        saveDeployed()
    }

    private func saveDeployed() {
        do {
            try store?.saveDeployedReleases(deployed)
        } catch {
            logger.error("cannot persist the deployed release folders: \(error)")
        }
    }
}
