import Glibc

/// Which folders may be baton's state, runtime and releases directories.
///
/// baton writes into the first two and deletes inside the third, so each must be a directory
/// of the app's own: never `/` or a system directory itself, never one holding the app's
/// release or the config file, and never one inside another (pruning the releases directory
/// must not reach the state directory; the state directory must not hold the runtime files).
/// The checks are lexical (`..`, `.`, repeated and trailing slashes are normalised; symlinks
/// are not followed).
public enum DirectoryRules {
    /// Directories that are never baton's own: `/`, the FHS top level, and the shared parents
    /// of baton's defaults (`/run/baton`, `/var/lib/baton`).
    public static let systemDirectories: Set<String> = [
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found", "/media",
        "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
        "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin",
        "/usr/local/etc", "/usr/local/lib", "/usr/local/sbin", "/usr/local/share", "/usr/sbin", "/usr/share",
        "/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log",
        "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp", "/run/lock", "/run/user", "/run/baton",
        "/var/lib/baton", "/etc/baton", "/etc/systemd", "/etc/systemd/system",
    ]

    /// One of the directories checked: the key that sets it and its path.
    public struct Entry: Sendable, Equatable {
        /// The key path (`["app", "state_directory"]`).
        public var key: [String]
        /// The directory (absolute).
        public var path: String
        /// The key is not set: `path` is baton's default (checked against the others, never reported).
        public var isDefault: Bool

        /// Creates an entry.
        public init(key: [String], path: String, isDefault: Bool = false) {
            self.key = key
            self.path = path
            self.isDefault = isDefault
        }

        /// `app.state_directory`.
        var name: String { key.joined(separator: ".") }
    }

    /// A directory that breaks a rule.
    public struct Violation: Sendable, Equatable {
        /// The key whose value breaks it.
        public var key: [String]
        /// Why, naming the other directory involved (without the key itself).
        public var message: String
    }

    /// `path` made absolute-lexical: repeated slashes, `.` and trailing slashes dropped, `..`
    /// resolved against the components before it (never above `/`).
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The folder of the file at `path`, absolute and normalised (a relative path is taken
    /// from the working directory); nil when the working directory cannot be read.
    public static func folder(ofFile path: String) -> String? {
        var absolute = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard getcwd(&buffer, buffer.count) != nil else { return nil }
            absolute = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
        }
        let normalized = normalize(absolute)
        guard let slash = normalized.lastIndex(of: "/"), slash != normalized.startIndex else { return "/" }
        return String(normalized[..<slash])
    }

    /// Whether `path` is `directory` or inside it (both normalised).
    public static func isWithin(_ path: String, _ directory: String) -> Bool {
        let path = normalize(path)
        let directory = normalize(directory)
        if directory == "/" || path == directory { return true }
        return path.hasPrefix(directory + "/")
    }

    /// Every rule the configured directories break.
    ///
    /// - Parameters:
    ///   - state: `app.state_directory` (or its default, `/var/lib/baton/NAME`).
    ///   - runtime: `app.runtime_directory` (or its default, `/run/baton/NAME`).
    ///   - releases: `deploy.releases_directory`, when set.
    ///   - appDirectory: `app.directory`, the first release: the state and runtime
    ///     directories must not hold it, the releases directory must not be it (it may hold it).
    ///   - configFolder: The folder of the config file (absolute), when the config came from one.
    /// - Returns: One violation per rule broken by a set key (defaults are never reported).
    public static func violations(
        state: Entry, runtime: Entry, releases: Entry?, appDirectory: String, configFolder: String?
    ) -> [Violation] {
        let entries = [state, runtime] + (releases.map { [$0] } ?? [])
        let app = normalize(appDirectory)
        var found: [Violation] = []
        for (offset, entry) in entries.enumerated() where !entry.isDefault {
            let path = normalize(entry.path)
            func refuse(_ message: String) { found.append(Violation(key: entry.key, message: message)) }
            if systemDirectories.contains(path) {
                refuse("\(quote(path)) is a system directory: baton needs a directory of its own, like \(example(entry))")
                continue
            }
            if path == app {
                refuse("\(quote(path)) is the app's release directory (app.directory)")
            } else if entry.key != releases?.key, isWithin(app, path) {
                refuse("\(quote(path)) contains the app's release directory \(quote(app)) (app.directory)")
            }
            if let configFolder {
                let folder = normalize(configFolder)
                if path == folder {
                    refuse("\(quote(path)) is the config file's folder")
                } else if isWithin(folder, path) {
                    refuse("\(quote(path)) contains the config file's folder \(quote(folder))")
                }
            }
            for (otherOffset, other) in entries.enumerated() where otherOffset != offset {
                let otherPath = normalize(other.path)
                let otherName =
                    other.isDefault ? "the default \(other.key.last ?? "") \(quote(otherPath)) (\(other.name) is not set)" : "\(other.name) \(quote(otherPath))"
                let relation: String
                if path == otherPath {
                    relation = "is also"
                } else if isWithin(otherPath, path) {
                    relation = "contains"
                } else if isWithin(path, otherPath) {
                    relation = "is inside"
                } else {
                    continue
                }
                refuse("\(quote(path)) \(relation) \(otherName): the state, runtime and releases directories must not overlap")
            }
        }
        return found
    }

    /// A directory of the kind `entry` names, for messages.
    private static func example(_ entry: Entry) -> String {
        switch entry.key.last {
        case "state_directory": "/var/lib/baton/NAME"
        case "runtime_directory": "/run/baton/NAME"
        default: "/srv/NAME/releases"
        }
    }

    private static func quote(_ path: String) -> String { "\"\(path)\"" }
}
