import BatonCore
import Glibc

/// The checks of a parsed config against this host that `baton serve` would otherwise fail on
/// at start-up: the users and groups it names exist, and its environment file reads and
/// parses. `check-config`, `serve`, `reload` and `upgrade --check` run them, so a config that
/// passes check-config starts.
public enum ConfigHostCheck {
    /// Whether this process may run workers as another user: change its uid and groups
    /// (CAP_SETUID, CAP_SETGID), give their notify sockets to them (CAP_CHOWN) and signal them
    /// (CAP_KILL), as root may (a re-audit: a baton given only the first two started workers
    /// that could not notify, and hung at stop unable to kill them).
    static func mayChangeUser() -> Bool {
        guard let status = ProcFS.read("/proc/self/status"), let mask = ProcParsers.statusMask(status, field: "CapEff") else {
            return geteuid() == 0
        }
        let needed: UInt64 = 1 << 0 | 1 << 5 | 1 << 6 | 1 << 7  // CHOWN, KILL, SETGID, SETUID
        return mask & needed == needed
    }

    /// Throws the first problem, located at the key's line in `text` (the config's source).
    public static func check(_ config: BatonConfig, text: String) throws(ConfigError) {
        func problem(_ keyPath: [String], _ message: String) -> ConfigError {
            ConfigError(
                path: config.sourcePath, line: BatonConfig.line(of: keyPath, in: text),
                key: keyPath.joined(separator: "."), message: message)
        }
        var userAlone: Credentials?  // `[app] user` without `[app] group`
        if let user = config.app.user {
            do {
                userAlone = try Accounts.credentials(user: user, group: nil)
            } catch {
                throw problem(["app", "user"], "\(error)")
            }
        }
        let groups: [([String], String?)] = [
            (["app", "group"], config.app.group), (["control", "group"], config.control.group),
            (["control", "read_group"], config.control.readGroup), (["listen", "socket_group"], config.listen.socketGroup),
        ]
        for case (let keyPath, let group?) in groups {
            do {
                _ = try Accounts.groupID(group)
            } catch {
                throw problem(keyPath, "\(error)")
            }
        }
        // A re-audit: a baton without CAP_SETUID and CAP_SETGID (not root) passed check-config
        // with `[app] user` or `group`, then every start failed on "switching user: Operation
        // not permitted" until start_attempts, no key named. Its own identity needs no switch.
        if config.app.user != nil || config.app.group != nil, !mayChangeUser(),
            let wanted = try? Accounts.workerCredentials(user: config.app.user, group: config.app.group), !wanted.isCurrentIdentity
        {
            // The group's key when the user alone would need no switch.
            let key = config.app.group != nil && (config.app.user == nil || userAlone?.isCurrentIdentity == true) ? ["app", "group"] : ["app", "user"]
            let who = (config.app.user ?? "baton's own user") + (config.app.group.map { " with group \($0)" } ?? "")
            throw problem(
                key,
                "baton (uid \(geteuid())) lacks CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_CHOWN: it cannot run workers as \(who) (another identity than its own, its supplementary groups included); run baton as root with them, or as that identity without [app] user and group"
            )
        }
        if let path = config.app.environmentFile {
            let bytes: [UInt8]
            do {
                bytes = try RegularFile.read(path, maxBytes: ConfigPrecheck.maxBytes)
            } catch {
                throw problem(["app", "environment_file"], error.description)
            }
            if let error = ConfigPrecheck.check(bytes, path: path) { throw error }
            for (name, value) in try EnvironmentFile.parse(try ConfigPrecheck.decode(bytes, path: path), path: path) {
                if let trouble = WorkerContract.argumentProblem(name + "=" + value) {
                    throw problem(["app", "environment_file"], "\(path): \(name)=… \(trouble)")
                }
            }
        }
        // A socket path that is already a file, a directory or a symlink (bind never follows
        // one) fails the bind at start-up with "Address already in use", which reads as
        // another baton: say what is there instead.
        let socketPaths: [([String], String)] =
            [(["control", "socket"], config.control.socket)]
            + config.listen.addresses.compactMap { address in
                if case .unix(let path) = address { return (["listen", "addresses"], path) }
                return nil
            }
        for (keyPath, path) in socketPaths {
            var st = stat()
            guard lstat(path, &st) == 0, st.st_mode & S_IFMT != S_IFSOCK else { continue }
            throw problem(keyPath, "\(path) exists and is \(RegularFile.describe(st.st_mode & S_IFMT)), not a socket")
        }
        // What `serve` refuses at start-up, found here too (an operator audit found each passing
        // check-config): one path for a listening socket and the control socket, a listening
        // socket whose folder is missing (baton creates only the control socket's), and a state
        // or runtime directory others may write in.
        for case .unix(let path) in config.listen.addresses {
            // However spelled (a listeners audit: `/d/./ctl.sock` passed, then serve exited 2).
            if DirectoryRules.normalize(path) == DirectoryRules.normalize(config.control.socket) {
                throw problem(["listen", "addresses"], "\(path) is also [control] socket")
            }
            let folder = path[..<(path.lastIndex(of: "/") ?? path.startIndex)]
            if !folder.isEmpty, !Filesystem.isDirectory(String(folder)) {
                throw problem(["listen", "addresses"], "\(path): its folder \(folder) does not exist")
            }
        }
        // Another app's state, which `serve` refuses (a re-audit: check-config passed it).
        if let directory = config.app.stateDirectory, let other = StateStore.recordedApp(in: directory), other != config.app.name {
            throw problem(["app", "state_directory"], "\(DirectoryError(path: directory, reason: .otherApp(other)))")
        }
        for (keyPath, directory) in [(["app", "state_directory"], config.app.stateDirectory), (["app", "runtime_directory"], config.app.runtimeDirectory)] {
            var st = stat()
            guard let directory, stat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_mode & S_IWOTH != 0 else { continue }
            throw problem(keyPath, "\(DirectoryError(path: directory, reason: .writableByOthers(mode: UInt32(st.st_mode))))")
        }
    }
}
