import BatonSystem
import Glibc

/// The files the supervisor reads and writes itself, through its port (`SupervisorHost.files`):
/// `[app] environment_file` at each worker spec, and the runtime directory's `instance.json`
/// (the take-over record). Real files in baton (``LinuxHostFiles``); in memory in the tests of
/// BatonDaemon, so a missing environment file or a previous baton's record is a value the test
/// sets.
protocol HostFiles: AnyObject {
    /// The text of `path`; throws the failed call with its errno.
    func read(_ path: String) throws(SystemError) -> String
    /// Replaces `path` with `bytes` atomically (``AtomicFile``: a reader sees the old or the
    /// new content, never half of one; not durable: what is written here only has to outlive
    /// baton, not the host). Throws the failed call; `path` is left as it was then.
    func replace(_ path: String, with bytes: [UInt8]) throws(SystemError)
    /// Removes `path` (nothing when it is absent).
    func remove(_ path: String)
}

/// The real files.
final class LinuxHostFiles: HostFiles {
    /// A regular file only, opened without blocking (a FIFO at an environment file's path would
    /// stop the loop), anything else failing as EINVAL; text that is not UTF-8 fails as EILSEQ
    /// (decoded, it became U+FFFD in a worker's environment).
    func read(_ path: String) throws(SystemError) -> String {
        let bytes: [UInt8]
        do {
            bytes = try RegularFile.read(path)
        } catch {
            if error.systemError != nil { throw SystemError("read", subject: path) }
            throw SystemError("read", errno: EINVAL, subject: path)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw SystemError("read", errno: EILSEQ, subject: path) }
        return text
    }

    func replace(_ path: String, with bytes: [UInt8]) throws(SystemError) {
        try AtomicFile.replace(path, with: bytes, mode: 0o644, durable: false)
    }

    func remove(_ path: String) { unlink(path) }
}
