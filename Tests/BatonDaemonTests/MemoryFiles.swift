@testable import BatonDaemon
import BatonSystem
import Glibc

/// The supervisor's files in memory, by path: a path the test (or the supervisor) never wrote
/// is missing (ENOENT).
final class MemoryFiles: HostFiles {
    private var contents: [String: String] = [:]
    /// Replacements so far, by path.
    private(set) var writes: [String: Int] = [:]
    /// When set, `replace` fails with it (a full runtime directory) and changes nothing.
    var replaceError: SystemError?

    /// The text at `path` (nil: missing); the test sets or removes one.
    subscript(path: String) -> String? {
        get { contents[path] }
        set { contents[path] = newValue }
    }

    func read(_ path: String) throws(RegularFile.Failure) -> String {
        guard let text = contents[path] else { throw RegularFile.Failure(path: path, systemError: String(cString: strerror(ENOENT))) }
        return text
    }

    func replace(_ path: String, with bytes: [UInt8]) throws(SystemError) {
        if let replaceError { throw replaceError }
        contents[path] = String(decoding: bytes, as: UTF8.self)
        writes[path, default: 0] += 1
    }

    func remove(_ path: String) { contents[path] = nil }
}
