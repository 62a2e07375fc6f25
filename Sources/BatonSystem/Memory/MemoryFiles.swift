import BatonCore
import Glibc

/// A memory figure that could not be read: which file, and why, in one line.
public enum MemoryReadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be opened or read.
    case unreadable(path: String, errno: Int32)
    /// The file was read but did not have the expected shape.
    case malformed(path: String, problem: String)
    /// The process's memory is not accounted in any cgroup baton can read (no memory
    /// controller on its hierarchy, no matching mount, or the root cgroup).
    case noMemoryCgroup(pid: String, reason: String)

    /// `/proc/meminfo: No such file or directory (errno 2)`, `/proc/meminfo: missing field "MemAvailable"`.
    public var description: String {
        switch self {
        case .unreadable(let path, let errno):
            "\(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .malformed(let path, let problem):
            "\(path): \(problem)"
        case .noMemoryCgroup(let pid, let reason):
            "no memory cgroup for process \(pid): \(reason)"
        }
    }

    /// The likely cause, when /proc hides the host's figures (a hardening audit: systemd's
    /// `ProcSubset=pid` leaves only the processes' folders); empty otherwise.
    public var hint: String {
        self == .unreadable(path: "/proc/meminfo", errno: ENOENT) ? " (systemd's ProcSubset=pid hides it: remove that from the unit)" : ""
    }
}

/// File access for the memory readers: whole small files with errno kept, under a root
/// directory so tests can point the readers at a recorded tree.
struct MemoryFiles: Sendable {
    /// The directory standing for "/".
    let root: String

    /// The path of `absolute` under the root.
    func path(_ absolute: String) -> String {
        root == "/" || root.isEmpty ? absolute : (root.hasSuffix("/") ? String(root.dropLast()) : root) + absolute
    }

    /// Reads `absolute` (under the root) whole.
    func read(_ absolute: String) throws(MemoryReadError) -> String {
        let full = path(absolute)
        let fd = open(full, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: full, errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: full, errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads `absolute` if it exists; nil for ENOENT (an optional cgroup file), throws otherwise.
    func readIfPresent(_ absolute: String) throws(MemoryReadError) -> String? {
        do throws(MemoryReadError) {
            return try read(absolute)
        } catch .unreadable(_, let code) where code == ENOENT {
            return nil
        }
    }

    /// Whether `absolute` (under the root) exists.
    func exists(_ absolute: String) -> Bool {
        access(path(absolute), F_OK) == 0
    }

    /// Runs a parser, adding the path to its error.
    func parse<T>(_ absolute: String, _ body: (String) throws(MemoryParseError) -> T) throws(MemoryReadError) -> T {
        let text = try read(absolute)
        do throws(MemoryParseError) {
            return try body(text)
        } catch {
            throw .malformed(path: path(absolute), problem: error.problem)
        }
    }
}
