import BatonCore
import FoundationEssentials
import Glibc

/// The release folders of an app on disk: listing them, and removing the
/// ones retention gave up, off the event loop (a release with a large
/// `node_modules` takes seconds to delete).
public enum ReleaseFolders {
    /// The real subfolders of `directory` (no symlinks, no dot-names such as
    /// rsync's temporaries), unsorted.
    public static func scan(_ directory: String) throws(SystemError) -> [ReleaseFolder] {
        guard let names = Filesystem.entryNames(of: directory) else { throw SystemError("opendir", subject: directory) }
        var folders: [ReleaseFolder] = []
        for name in names {
            if name.hasPrefix(".") { continue }
            let path = directory == "/" ? "/" + name : directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            folders.append(ReleaseFolder(name: name, path: path, modifiedAt: modified))
        }
        return folders
    }

    /// Removes each folder (recursively, never following symlinks) on a
    /// thread of its own, then calls `completion` on `loop` with the paths
    /// removed and one line per failure. Call it on the loop's thread.
    public static func removeInBackground(
        _ paths: [String], loop: EventLoop, completion: @escaping ([String], [String]) -> Void
    ) {
        loop.offload(
            { () -> ([String], [String]) in
                var removed: [String] = []
                var failures: [String] = []
                for path in paths {
                    do {
                        try FileManager.default.removeItem(atPath: path)
                        removed.append(path)
                    } catch {
                        failures.append("cannot remove \(path): \(error)")
                    }
                }
                return (removed, failures)
            },
            completion: { completion($0.0, $0.1) })
    }
}
