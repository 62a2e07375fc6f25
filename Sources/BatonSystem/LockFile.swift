import Glibc

/// A lock file (`flock`) held for the rest of the process's life: the state directory's and
/// the runtime directory's `.lock`, each with the holder's pid written in it. The descriptor is
/// close-on-exec: `baton upgrade`'s new image takes the lock again.
public final class LockFile: Sendable {
    /// Why the lock was not taken.
    public enum Failure: Error, Equatable {
        /// Another process holds it (its pid, as it wrote it in the file).
        case held(pid: Int32?)
        /// The file could not be opened.
        case system(SystemError)
    }

    /// The file's path.
    public let path: String
    /// The open descriptor holding the lock.
    public let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Opens `path` (made 0640 when missing) and takes its lock, without waiting; nil when
    /// there is nothing to lock (a read-only file system without the file: nothing is written
    /// there either). flock needs no write access: a file baton cannot write (immutable, a
    /// folder, a read-only file system) is locked as it is (a state audit made `.lock` a
    /// folder: two batons ran on one state directory).
    public static func take(_ path: String) throws(Failure) -> LockFile? {
        // Never through a symbolic link (a re-audit: one at `.lock` in a directory its group may
        // write in made a root baton truncate the file it named and write its pid there).
        var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        if fd < 0 && errno != ELOOP { fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        guard fd >= 0 else {
            if errno == EROFS || errno == ENOENT { return nil }
            throw .system(SystemError("open", errno: errno, subject: path))
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            // The holder writes its pid once it has the lock: a start racing it may read the file
            // empty (a re-audit: 8 of 16 refusals named no pid); a moment later it is there.
            var holder: Int32?
            for attempt in 0..<5 {
                holder = ProcFS.read(path).flatMap { Int32($0.filter { !$0.isWhitespace }) }
                if holder != nil || attempt == 4 { break }
                usleep(10_000)
            }
            close(fd)
            throw .held(pid: holder)
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
        return LockFile(path: path, fd: fd)
    }

    /// Whether the file at `path` is still the one locked (not removed, or replaced, since).
    public var isStillAtItsPath: Bool {
        var held = stat()
        var there = stat()
        return fstat(fd, &held) == 0 && stat(path, &there) == 0 && held.st_dev == there.st_dev && held.st_ino == there.st_ino
    }
}
