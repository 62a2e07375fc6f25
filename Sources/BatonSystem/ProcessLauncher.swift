import CBatonLinux
import BatonCore
import Glibc

/// Everything needed to start one worker (or probe) process.
public struct SpawnRequest: Sendable, Equatable {
    /// argv; argv[0] is looked up in the environment's PATH unless it has a '/'.
    public var argv: [String]
    /// The complete environment as "KEY=VALUE" (built explicitly, never inherited).
    public var environment: [String]
    /// Working directory.
    public var directory: String?
    /// Descriptors placed at 3, 4, ... in the child.
    public var passFDs: [Int32]
    /// Adds LISTEN_PID=<the child's own pid> to the environment.
    public var setListenPID: Bool
    /// Adds WATCHDOG_PID=<the child's own pid> to the environment (with a worker watchdog).
    public var setWatchdogPID = false
    /// Child's stdout and stderr (-1: /dev/null).
    public var stdout: Int32
    /// See `stdout`.
    public var stderr: Int32
    /// Drop to this user/group before execve (nil: keep baton's).
    public var credentials: Credentials?
    /// A descriptor also placed in the child at `holdTarget` (0: none), after
    /// the others: baton's reader of the worker's output pipe
    /// (`WorkerContract.outputReaderFD`). Skipped, not an error, when the
    /// child cannot have that fd (RLIMIT_NOFILE).
    public var holdFD: Int32 = -1
    /// See `holdFD`.
    public var holdTarget: Int32 = 0
    /// Marks the child mergeable for KSM (prctl PR_SET_MEMORY_MERGE) before it execs
    /// (`memory.mergeable`). A kernel's refusal does not fail the spawn: see
    /// `ChildProcess.memoryMergeErrno`.
    public var memoryMerge = false
    /// Start the child in a session of its own (setsid) instead of a process group of its own
    /// in the caller's session. baton's workers, molds and probes never do (a session is a
    /// scheduling group of its own: docs/ARCHITECTURE.md, "Platform facts"); the test and
    /// benchmark harnesses start baton, peers and tools this way, as systemd or an ssh
    /// login starts baton: in a session apart from the load client's.
    public var ownSession = false
    /// The child's RLIMIT_NOFILE soft limit, set just before execve (nil: the one baton was
    /// started with when `DescriptorLimit.raise()` raised baton's, else baton's own).
    public var descriptorSoftLimit: UInt64?
    /// Signals the child ignores from its start, before its own code runs (SIG_IGN survives
    /// execve): the config parser's, which a unit's `systemctl kill` reaches too.
    public var ignoredSignals: [Int32] = []

    /// Creates a request; output goes to /dev/null unless set.
    public init(
        argv: [String], environment: [String], directory: String? = nil, passFDs: [Int32] = [],
        setListenPID: Bool = false, stdout: Int32 = -1, stderr: Int32 = -1, credentials: Credentials? = nil
    ) {
        self.argv = argv
        self.environment = environment
        self.directory = directory
        self.passFDs = passFDs
        self.setListenPID = setListenPID
        self.stdout = stdout
        self.stderr = stderr
        self.credentials = credentials
    }
}

/// A user and group a worker runs as.
public struct Credentials: Sendable, Equatable {
    /// User id.
    public var uid: uid_t
    /// Primary group id.
    public var gid: gid_t
    /// Supplementary groups.
    public var groups: [gid_t]
    /// HOME, USER, LOGNAME and SHELL of the user, from its passwd entry, as systemd's `User=`
    /// sets them (empty for a uid without one): a contract audit found workers of `[app] user`
    /// with baton's HOME=/root, and gunicorn failing to make its control socket there.
    public var account: [EnvVar]

    /// Whether this process runs as them already: its effective uid and gid, and the same
    /// supplementary groups.
    public var isCurrentIdentity: Bool {
        guard uid == geteuid(), gid == getegid() else { return false }
        let count = getgroups(0, nil)
        guard count >= 0 else { return false }
        var current = [gid_t](repeating: 0, count: Int(count))
        let read = getgroups(count, &current)
        return read == count && Set(current.prefix(Int(read))).subtracting([gid]) == Set(groups).subtracting([gid])
    }

    /// Creates credentials.
    public init(uid: uid_t, gid: gid_t, groups: [gid_t], account: [EnvVar] = []) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.account = account
    }
}

/// Why a spawn failed, as one line: `exec /srv/app/bin/web: No such file or directory`.
public struct SpawnError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The step that failed ("clone", or "fork" for a spawn with `memoryMerge`; "setpgid" or "setsid", "fds", "setuid", "chdir /srv/x", "exec /bin/x", "lookup").
    public var step: String
    /// errno, or 0 for a lookup failure.
    public var errno: Int32

    /// Creates an error.
    public init(step: String, errno: Int32) {
        self.step = step
        self.errno = errno
    }

    /// One line for logs and CLI output.
    public var description: String {
        errno == 0 ? step : "\(step): \(String(cString: strerror(errno)))"
    }
}

/// Starts processes. The real one clones (forks with `memoryMerge`); tests of pure logic use a fake.
public protocol ProcessLauncher: Sendable {
    /// Starts a process in a process group of its own, in the caller's session (a session of
    /// its own with `SpawnRequest.ownSession`), with exactly the descriptors and environment
    /// requested, and returns it with its pidfd, owned: the caller holds the
    /// only reference, and the pidfd is closed once, with it or by `ChildProcess.close()`.
    func spawn(_ request: SpawnRequest) throws(SpawnError) -> ChildProcess
}

/// clone/execve through CBatonLinux_spawn: the child shares this process's memory until
/// execve (a fork with `memoryMerge`; docs/ARCHITECTURE.md, "Process model"), resets signal
/// dispositions and the mask, setpgid (its own process group; setsid with `ownSession`),
/// places fds, closes the rest, sets LISTEN_PID to its own pid. Call it off the Swift
/// cooperative pool (baton calls it from its event-loop thread).
public struct LinuxProcessLauncher: ProcessLauncher {
    /// Creates the launcher.
    public init() {}

    /// See `ProcessLauncher.spawn`.
    public func spawn(_ request: SpawnRequest) throws(SpawnError) -> ChildProcess {
        guard let first = request.argv.first, !first.isEmpty else { throw SpawnError(step: "empty command", errno: 0) }
        let path = try Self.resolve(first, directory: request.directory, environment: request.environment)

        var cStrings: [UnsafeMutablePointer<CChar>] = []
        defer { cStrings.forEach { free($0) } }
        func c(_ s: String) -> UnsafeMutablePointer<CChar> {
            let p = strdup(s)!
            cStrings.append(p)
            return p
        }
        var argv: [UnsafeMutablePointer<CChar>?] = request.argv.map { c($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = request.environment.filter {
            !$0.hasPrefix("LISTEN_PID=") && !(request.setWatchdogPID && $0.hasPrefix("WATCHDOG_PID="))
        }.map { c($0) }
        var listenIndex: Int32 = -1
        if request.setListenPID {
            listenIndex = Int32(envp.count)
            envp.append(c("LISTEN_PID="))
        }
        var watchdogSlot: Int32 = 0
        if request.setWatchdogPID {
            watchdogSlot = Int32(envp.count) + 1
            envp.append(c("WATCHDOG_PID="))
        }
        envp.append(nil)
        let cPath = c(path)
        let cwd = request.directory.map { c($0) }
        var groups = request.credentials?.groups ?? []
        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var step: Int32 = 0
        let mergeErrno = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        mergeErrno.initialize(to: 0)
        defer { mergeErrno.deallocate() }
        let result = argv.withUnsafeMutableBufferPointer { argvBuf in
            envp.withUnsafeMutableBufferPointer { envBuf in
                request.passFDs.withUnsafeBufferPointer { fdBuf in
                    groups.withUnsafeMutableBufferPointer { groupBuf in
                        var attr = CBatonLinux_spawn_attr()
                        attr.path = UnsafePointer(cPath)
                        attr.argv = UnsafePointer(argvBuf.baseAddress)
                        attr.envp = UnsafePointer(envBuf.baseAddress)
                        attr.listen_pid_index = listenIndex
                        attr.watchdog_pid_slot = watchdogSlot
                        attr.cwd = cwd.map { UnsafePointer($0) }
                        attr.fds = fdBuf.baseAddress
                        attr.nfds = Int32(fdBuf.count)
                        attr.stdin_fd = -1
                        attr.stdout_fd = request.stdout
                        attr.stderr_fd = request.stderr
                        attr.hold_fd = request.holdFD
                        attr.hold_target = request.holdTarget
                        attr.memory_merge = request.memoryMerge ? 1 : 0
                        attr.memory_merge_errno = mergeErrno
                        attr.own_session = request.ownSession ? 1 : 0
                        attr.ignored_signals = request.ignoredSignals.reduce(UInt64(0)) { $0 | (1 << UInt64($1 - 1)) }
                        if let soft = request.descriptorSoftLimit ?? DescriptorLimit.original {
                            attr.set_nofile_soft = 1
                            attr.nofile_soft = soft
                        }
                        // Already this identity (a baton not root running as `[app] user`): no
                        // switch, which would need CAP_SETGID for setgroups (a re-audit).
                        if let cred = request.credentials, !cred.isCurrentIdentity {
                            attr.set_ids = 1
                            attr.uid = cred.uid
                            attr.gid = cred.gid
                            attr.groups = UnsafePointer(groupBuf.baseAddress)
                            attr.ngroups = Int32(groupBuf.count)
                        }
                        return CBatonLinux_spawn(&attr, &pid, &pidfd, &step)
                    }
                }
            }
        }
        if result != 0 {
            let e = Glibc.errno
            switch step {
            case 0: throw SpawnError(step: request.memoryMerge ? "fork" : "clone", errno: e)
            case 1: throw SpawnError(step: request.ownSession ? "setsid" : "setpgid", errno: e)
            case 2: throw SpawnError(step: "placing descriptors", errno: e)
            case 3: throw SpawnError(step: "switching user", errno: e)
            case 4: throw SpawnError(step: "chdir \(request.directory ?? "")", errno: e)
            default: throw SpawnError(step: "exec \(path)" + (e == ENOENT ? Self.missingInterpreter(path) : ""), errno: e)
            }
        }
        return ChildProcess(pid: pid, pidfd: OwnedDescriptor(pidfd), memoryMergeErrno: mergeErrno.pointee)
    }

    /// ": its #! interpreter /usr/bin/python9" when `path` is there and starts with a `#!` line
    /// (execve's ENOENT is then the interpreter's, as bash's "bad interpreter" says), else "".
    /// A starved audit: a missing interpreter read as the script missing.
    static func missingInterpreter(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &head, head.count)
        guard n > 2, head[0] == UInt8(ascii: "#"), head[1] == UInt8(ascii: "!") else { return "" }
        let line = head[2..<n].prefix { $0 != UInt8(ascii: "\n") }
        guard let interpreter = line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }).first else { return "" }
        // Shown as printable (a re-audit: a CRLF script's "/bin/sh\r" garbled the line; an escape
        // in the #! line reached the terminal of `baton deploy` and `baton history`).
        return ": its #! interpreter \(ControlProtocol.printable(String(decoding: interpreter, as: UTF8.self)))"
    }

    /// Resolves argv[0] like execvp, but against the child's PATH and
    /// directory, in the parent (nothing to allocate in the child).
    public static func resolve(_ name: String, directory: String?, environment: [String]) throws(SpawnError) -> String {
        if name.contains("/" as Character) {
            if name.hasPrefix("/") { return name }
            return (directory.map { $0.hasSuffix("/") ? $0 : $0 + "/" } ?? "") + name
        }
        let pathVar =
            environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
            ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in pathVar.split(separator: ":", omittingEmptySubsequences: false) {
            var base = dir.isEmpty ? "." : String(dir)
            if !base.hasPrefix("/"), let directory { base = directory + "/" + base }
            let candidate = base + "/" + name
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        throw SpawnError(step: "command not found in PATH: \(name)", errno: 0)
    }
}
