import BatonCore
import BatonSystem
import Glibc

/// The files the supervisor reads and writes itself, through its port (`SupervisorHost.files`):
/// `[app] environment_file` at each worker spec, and the runtime directory's `instance.json`
/// (the take-over record). Real files in baton (``LinuxHostFiles``); in memory in the tests of
/// BatonDaemon, so a missing environment file or a previous baton's record is a value the test
/// sets.
protocol HostFiles: AnyObject {
    /// The text of `path`, a regular file of at most ``maxBytes``; throws what is wrong with it,
    /// in one line naming it.
    func read(_ path: String) throws(RegularFile.Failure) -> String
    /// Replaces `path` with `bytes` atomically (``AtomicFile``: a reader sees the old or the
    /// new content, never half of one; not durable: what is written here only has to outlive
    /// baton, not the host). Throws the failed call; `path` is left as it was then.
    func replace(_ path: String, with bytes: [UInt8]) throws(SystemError)
    /// Removes `path` (nothing when it is absent).
    func remove(_ path: String)
}

/// The largest file read through ``HostFiles`` (an environment file, as a config: 1 MiB).
let hostFilesMaxBytes = ConfigPrecheck.maxBytes

/// The real files.
final class LinuxHostFiles: HostFiles {
    /// A regular file only, opened without blocking (a FIFO at an environment file's path would
    /// stop the loop), and refused unread when larger than 1 MiB (read whole, a 60 MiB file
    /// took baton's memory from 30 to 152 MB before the size check refused it); text that is
    /// not UTF-8 fails too (decoded, it became U+FFFD in a worker's environment).
    func read(_ path: String) throws(RegularFile.Failure) -> String {
        let bytes = try RegularFile.read(path, maxBytes: hostFilesMaxBytes)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw RegularFile.Failure(path: path, fileProblem: "is not valid UTF-8 text") }
        return text
    }

    func replace(_ path: String, with bytes: [UInt8]) throws(SystemError) {
        try AtomicFile.replace(path, with: bytes, mode: 0o644, durable: false)
    }

    func remove(_ path: String) { unlink(path) }
}
