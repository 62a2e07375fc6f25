import BatonSystem
import Glibc

/// The binary `baton upgrade` is asked to run, opened once: its checks are
/// made on the open descriptor (fstat), the check child runs that descriptor
/// and the execve executes it (execveat), so a file swapped in at the path
/// between the check and the exec is never run. It owns that descriptor: closed once, by
/// ``close()`` or with the last reference.
final class UpgradeBinary {
    /// The path asked for (messages and the new image's argv[0]).
    let path: String
    /// The read-only, close-on-exec descriptor of the file, until closed.
    private var file: OwnedDescriptor?
    /// Its number; -1 once closed.
    var fd: Int32 { file?.rawValue ?? -1 }

    /// The file's `#!` line when it is a script: the check can run it (as `/proc/self/fd/4`, a
    /// descriptor it inherits), the exec cannot (execveat of a close-on-exec descriptor leaves the
    /// interpreter nothing to open, and fails with ENOENT), so the upgrade is refused in those words.
    let scriptLine: String?

    private init(path: String, file: consuming OwnedDescriptor, scriptLine: String?) {
        self.path = path
        self.file = consume file
        self.scriptLine = scriptLine
    }

    /// Why a binary cannot be upgraded to, in one line.
    struct Refusal: Error, CustomStringConvertible {
        /// The reason.
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Opens `path` and checks that only root (or `owner`, baton's euid when
    /// it does not run as root) can have written it: a regular executable
    /// file owned by root or `owner`, not writable by group or others, in a
    /// directory others cannot write to (where it could be renamed over).
    static func open(_ path: String, owner: uid_t) throws(Refusal) -> UpgradeBinary {
        guard path.hasPrefix("/") else { throw Refusal("\(path) is not an absolute path") }
        // O_NONBLOCK: opening a FIFO for reading would block the event loop until a writer came
        // (a regular file ignores the flag); O_NOCTTY: a terminal does not become baton's.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw Refusal("cannot open \(path): \(String(cString: strerror(errno)))") }
        let file = OwnedDescriptor(fd)  // closed on every refusal below
        var st = stat()
        guard fstat(file.rawValue, &st) == 0 else { throw Refusal("cannot fstat \(path): \(String(cString: strerror(errno)))") }
        let directory = path[..<(path.lastIndex(of: "/") ?? path.startIndex)]
        var dir = stat()
        let dirOK = stat(directory.isEmpty ? "/" : String(directory), &dir) == 0
        var problem: String?
        if st.st_mode & mode_t(S_IFMT) != mode_t(S_IFREG) {
            problem = "\(path) is not a regular file"
        } else if st.st_mode & 0o111 == 0 {
            problem = "\(path) is not executable"
        } else if st.st_uid != 0 && st.st_uid != owner {
            problem = "\(path) is owned by uid \(st.st_uid), not by root\(owner == 0 ? "" : " or uid \(owner)")"
        } else if st.st_mode & 0o022 != 0 {
            problem = "\(path) is writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        } else if !dirOK {
            problem = "cannot stat the directory of \(path): \(String(cString: strerror(errno)))"
        } else if dir.st_mode & 0o002 != 0 {
            problem = "the directory of \(path) is writable by others (mode \(String(dir.st_mode & 0o7777, radix: 8)))"
        }
        if let problem { throw Refusal(problem) }
        let line = scriptLine(of: file.rawValue)
        return UpgradeBinary(path: path, file: file, scriptLine: line)
    }

    /// The first line of the file `fd` (up to 80 bytes) when it starts with `#!`.
    private static func scriptLine(of fd: Int32) -> String? {
        var head = [UInt8](repeating: 0, count: 80)
        let count = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 2, head[0] == UInt8(ascii: "#"), head[1] == UInt8(ascii: "!") else { return nil }
        let line = head[..<count].prefix { $0 != UInt8(ascii: "\n") }
        return String(decoding: line, as: UTF8.self)
    }

    /// Closes the descriptor now; later calls do nothing.
    func close() { file = nil }
}
