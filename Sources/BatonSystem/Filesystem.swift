import Glibc

/// A directory baton cannot use: its path, why, and (once the caller knows it) the config key
/// that named it. The description is one line.
public struct DirectoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Why the directory cannot be used.
    public enum Reason: Sendable, Equatable {
        /// A system call failed (mkdir, stat, access, chmod).
        case system(SystemError)
        /// The path exists and is not a directory.
        case notADirectory
        /// It already existed and others may write in it (its mode, untouched).
        case writableByOthers(mode: UInt32)
        /// Another process holds its lock (another baton uses it); its pid, if it wrote it.
        case inUse(pid: Int32?)
        /// Another process holds its runtime directory lock (that pid, when known).
        case runtimeInUse(pid: Int32?)
        /// Its release.json is another app's (that `[app] name`).
        case otherApp(String)
    }

    /// The directory.
    public var path: String
    /// See ``Reason``.
    public var reason: Reason
    /// The config key (or environment variable) the directory came from, for the message.
    public var key: String?

    /// Creates an error.
    public init(path: String, reason: Reason, key: String? = nil) {
        self.path = path
        self.reason = reason
        self.key = key
    }

    /// `app.state_directory: /srv/x is writable by others (mode 0777): ...`.
    public var description: String {
        let prefix = key.map { "\($0): " } ?? ""
        switch reason {
        case .system(let error):
            return prefix + "\(error)"
        case .notADirectory:
            return prefix + "\(path) is not a directory"
        case .writableByOthers(let mode):
            return prefix
                + "\(path) is writable by others (mode \(String(mode & 0o7777, radix: 8))): refusing to use it; "
                + "baton never changes a directory it did not create (chmod o-w \(path), or let baton create a new one)"
        case .inUse(let pid):
            return prefix
                + "\(path) is in use by another baton\(pid.map { " (pid \($0))" } ?? ""): two batons must not share a state directory (each writes which release runs)"
        case .runtimeInUse(let pid):
            return prefix
                + "\(path) is in use by another baton\(pid.map { " (pid \($0))" } ?? ""): two batons must not share a runtime directory "
                + "(each keeps the record of its workers and their notify sockets there): stop the other, or give this app a runtime_directory of its own"
        case .otherApp(let app):
            return prefix
                + "\(path) holds the release state of app \"\(app)\" (its release.json): two apps must not share a state directory; "
                + "give this one a state_directory of its own (renamed the app? name it back, or move that release.json away)"
        }
    }
}

/// Directories baton creates, or finds and uses as they are.
/// A file's device and inode: tells the file at a path from one put there since (a socket
/// baton bound, then removed and bound again by another process).
public struct FileIdentity: Equatable, Sendable {
    public let device: UInt64
    public let inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// The file at `path` itself (a symbolic link not followed), nil when there is none.
    public init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}

public enum Filesystem {
    /// Why this process could not make `path` (as `mkdir -p`) or write in it: the folder that
    /// refuses (`path`, or its nearest existing ancestor) and errno's text; nil when it can.
    public static func whyNotWritable(_ path: String) -> (folder: String, reason: String)? {
        var folder = path
        while access(folder, F_OK) != 0 {
            guard let slash = folder.lastIndex(of: "/") else { return nil }
            folder = slash == folder.startIndex ? "/" : String(folder[..<slash])
        }
        guard access(folder, W_OK | X_OK) != 0 else { return nil }
        return (folder, String(cString: strerror(errno)))
    }

    /// The names in `directory` (`.` and `..` included, as readdir gives them); nil when it
    /// cannot be opened (errno says why).
    public static func entryNames(of directory: String) -> [String]? {
        guard let dir = opendir(directory) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            names.append(withUnsafeBytes(of: entry.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) })
        }
        return names
    }

    /// Whether `path` is an existing directory (symlinks followed).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Whether `path` itself (its last component) is a symbolic link.
    public static func isSymbolicLink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    /// The target of the symbolic link `path` (readlink), nil when it is not one.
    public static func linkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// mkdir -p: creates the missing components of `path`, the last with `mode` and the
    /// parents with 0755 (umask applied). An existing directory keeps its owner and mode:
    /// baton never chmods or chowns what it did not create; it only checks that it can write
    /// in it and, with `refuseWritableByOthers`, that others cannot.
    ///
    /// - Returns: The directories created, outermost first; empty when `path` existed (a
    ///   created component implies every one below it, `path` included, was created too).
    @discardableResult
    public static func makeDirectory(_ path: String, mode: UInt32, refuseWritableByOthers: Bool = false) throws(DirectoryError)
        -> [String]
    {
        var created: [String] = []
        var current = path.hasPrefix("/") ? "" : "."
        let parts = path.split(separator: "/")
        for (offset, part) in parts.enumerated() {
            current += "/" + part
            let isLast = offset == parts.count - 1
            if mkdir(current, isLast ? mode_t(mode) : 0o755) == 0 {
                created.append(current)
                // Ours since just now: give it exactly `mode` (mkdir applied the umask),
                // through a descriptor so that a symlink swapped in meanwhile is not followed.
                if isLast {
                    let fd = open(current, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    defer { if fd >= 0 { close(fd) } }
                    guard fd >= 0, fchmod(fd, mode_t(mode)) == 0 else {
                        throw DirectoryError(path: path, reason: .system(SystemError("chmod", subject: current)))
                    }
                }
            } else if errno != EEXIST {
                throw DirectoryError(path: path, reason: .system(SystemError("mkdir", subject: current)))
            }
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw DirectoryError(path: path, reason: .system(SystemError("stat", subject: path))) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw DirectoryError(path: path, reason: .notADirectory) }
        guard created.isEmpty else { return created }
        if refuseWritableByOthers, info.st_mode & S_IWOTH != 0 {
            throw DirectoryError(path: path, reason: .writableByOthers(mode: UInt32(info.st_mode)))
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw DirectoryError(path: path, reason: .system(SystemError("access", subject: path)))
        }
        return created
    }
}
