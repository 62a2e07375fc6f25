import Glibc

/// Files replaced whole and atomically: the bytes go to a temp file beside the target, which
/// is then renamed over it, so a reader sees the old content or the new, never half of one.
/// The one writer behind the state directory's files (`StateStore`, durable) and the runtime
/// directory's `instance.json` (not durable).
public enum AtomicFile {
    /// The temp file `replace` writes before renaming it to `path`: beside it (a rename never
    /// crosses file systems) and named after this process, so that two batons replacing the
    /// same file (an upgrade's old and new) never write into one temp file.
    public static func temporaryPath(for path: String) -> String { path + ".tmp.\(getpid())" }

    /// The pid whose temp file (`temporaryPath`) the file `name` is, nil for any other name.
    public static func writer(ofTemporary name: String) -> pid_t? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[parts.count - 2] == "tmp", let last = parts.last, last.allSatisfy(\.isNumber) else { return nil }
        return pid_t(last)
    }

    /// Replaces `path` with `bytes`. `mode`: the new file's permission bits (the umask
    /// applies). `durable`: the data and the rename survive a crash of the host (fsync of the
    /// file before the rename, of the directory after), for what must outlive a reboot; without
    /// it, what is written only has to outlive baton.
    ///
    /// Throws the failed call (open, write, fsync or rename) with its errno; the temp file is
    /// removed then and `path` keeps its old content.
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t, durable: Bool) throws(SystemError) {
        let temporary = temporaryPath(for: path)
        let fd = try syscall("open", subject: temporary) { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
        var isOpen = true
        do throws(SystemError) {
            try writeFully(fd, bytes, subject: temporary)
            if durable { try syscall("fsync", subject: temporary) { fsync(fd) } }
            // close(2) may report a write-back error (NFS, a full quota) that write did not;
            // the descriptor is gone either way.
            isOpen = false
            guard close(fd) == 0 else { throw SystemError("close", subject: temporary) }
            try syscall("rename", subject: path) { rename(temporary, path) }
        } catch {
            if isOpen { close(fd) }
            unlink(temporary)
            throw error
        }
        guard durable else { return }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let dir = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }

    /// Writes all of `bytes` to `fd` (retrying after a signal or a short write); throws the
    /// first failed write.
    private static func writeFully(_ fd: Int32, _ bytes: [UInt8], subject: String) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", subject: subject)
            }
            offset += n
        }
    }
}
