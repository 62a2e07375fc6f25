import BatonCore
import Glibc

/// Reads of files an operator names (a config, an environment file): a regular file, up to a
/// size, and a pipe or FIFO (`check-config /dev/stdin`, `<(generate)`) only where the caller
/// gives a deadline. Opening never blocks (`O_NONBLOCK`: a FIFO nobody writes to waited for a
/// writer forever) and a device such as `/dev/zero` is refused before a byte is read, so a
/// careless path is a one-line error, never a hang or an unbounded read.
public enum RegularFile {
    /// Why a file was not read, in one line.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The file.
        public var path: String
        /// The failed call's errno text, when a call failed (`open`, `fstat`, `read`).
        public var systemError: String?
        /// What is wrong with the file otherwise (`is not a regular file (a FIFO)`).
        public var fileProblem: String?

        /// Without the path, for a message that names it first: `cannot read: No such file
        /// or directory`, `is not a regular file (a FIFO)`.
        public var problem: String { systemError.map { "cannot read: \($0)" } ?? fileProblem ?? "" }
        /// With the path: `cannot read /x: No such file or directory`, `/x is not a regular
        /// file (a FIFO)`.
        public var description: String { systemError.map { "cannot read \(path): \($0)" } ?? "\(path) \(fileProblem ?? "")" }

        /// A failure of `path`: a failed call's errno text, or what is wrong with the file.
        public init(path: String, systemError: String? = nil, fileProblem: String? = nil) {
            self.path = path
            self.systemError = systemError
            self.fileProblem = fileProblem
        }
    }

    /// The whole content of the regular file at `path`.
    ///
    /// - Parameters:
    ///   - maxBytes: A larger file is refused (its size in the message); nil: no limit.
    ///   - pipeDeadline: With it, a pipe or FIFO is read too, until its writers close it, for
    ///     at most this long; without it, one is refused.
    public static func read(_ path: String, maxBytes: Int? = nil, pipeDeadline: Duration? = nil) throws(Failure) -> [UInt8] {
        func systemFailure() -> Failure { Failure(path: path, systemError: String(cString: strerror(errno))) }
        func tooLarge(_ size: String) -> Failure {
            Failure(path: path, fileProblem: "is larger than \(Units.formatSize(UInt64(maxBytes ?? 0))) (\(size))")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw systemFailure() }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw systemFailure() }
        let type = st.st_mode & S_IFMT
        if type == S_IFIFO, let pipeDeadline {
            return try readPipe(fd, path: path, maxBytes: maxBytes, deadline: monotonicNow() + pipeDeadline, limit: pipeDeadline)
        }
        guard type == S_IFREG else { throw Failure(path: path, fileProblem: "is not a regular file (\(describe(type)))") }
        if let maxBytes, st.st_size > maxBytes { throw tooLarge("\(st.st_size) bytes") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(st.st_size))
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw systemFailure()
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
            // The file grew while being read: the limit holds for what is read too.
            if let maxBytes, bytes.count > maxBytes { throw tooLarge("it grew while being read") }
        }
        return bytes
    }

    /// Reads a pipe opened non-blocking until it is closed after a writer came, `maxBytes` and
    /// `deadline` bounding it. On Linux poll reports POLLHUP on a FIFO only once a writer has
    /// been and gone, so a FIFO nobody opened yet is waited for, not taken as empty.
    private static func readPipe(_ fd: Int32, path: String, maxBytes: Int?, deadline: Duration, limit: Duration) throws(Failure)
        -> [UInt8]
    {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let left = deadline - monotonicNow()
            guard left > .zero else {
                throw Failure(path: path, fileProblem: "is a pipe that no writer finished within \(Units.formatDuration(limit))")
            }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0, errno != EINTR { throw Failure(path: path, systemError: String(cString: strerror(errno))) }
            guard ready > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw Failure(path: path, systemError: String(cString: strerror(errno)))
            }
            if n == 0 {
                // End of file once the writers are gone (POLLHUP); before any writer, keep waiting.
                if entry.revents & Int16(POLLHUP) != 0 { return bytes }
                continue
            }
            bytes.append(contentsOf: buffer[0..<n])
            if let maxBytes, bytes.count > maxBytes {
                throw Failure(path: path, fileProblem: "is larger than \(Units.formatSize(UInt64(maxBytes))) (more was written)")
            }
        }
    }

    /// The file type's name, for the message.
    static func describe(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFREG: "a regular file"
        case S_IFLNK: "a symbolic link"
        default: "type \(String(type, radix: 8))"
        }
    }
}
