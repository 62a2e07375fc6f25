/// Builds a worker's environment explicitly (docs/ARCHITECTURE.md, *Process model*):
/// baton's environment minus what belongs to baton's own relation with
/// systemd, plus the environment file, `[app.environment]`, and the worker's
/// own LISTEN_*, NOTIFY_SOCKET and WATCHDOG_USEC. baton's own environment is never modified
/// (it needs NOTIFY_SOCKET and LISTEN_* again after re-executing itself), but for
/// BATON_NOFILE_SOFT, which carries the descriptor limit baton was started with across that
/// execve (`DescriptorLimit`).
public enum WorkerEnvironment {
    /// Names removed from baton's environment.
    public static let strippedNames: Set<String> = [
        "NOTIFY_SOCKET", "SYSTEMD_EXEC_PID", "MANAGERPID", "JOURNAL_STREAM", "INVOCATION_ID",
        "CREDENTIALS_DIRECTORY", "BATON_NOFILE_SOFT",
    ]
    /// Prefixes removed from baton's environment.
    public static let strippedPrefixes = ["WATCHDOG_", "LISTEN_"]

    /// True when `name` must not pass from baton to a worker.
    public static func isStripped(_ name: String) -> Bool {
        strippedNames.contains(name) || strippedPrefixes.contains { name.hasPrefix($0) }
    }

    /// The environment as "KEY=VALUE" entries; later sources win.
    /// LISTEN_PID (and WATCHDOG_PID) are not included: the spawn path sets them to the child's
    /// own pid. `watchdog` is the worker watchdog's interval, passed as WATCHDOG_USEC. `account`:
    /// HOME, USER, LOGNAME and SHELL of `[app] user`, over baton's own (the environment file
    /// and `[app.environment]` may still set them). `directory`: the folder the process starts
    /// in, its `PWD` (and no `OLDPWD`).
    public static func build(
        inherited: [String],
        account: [EnvVar] = [],
        fileVariables: [EnvVar],
        configVariables: [EnvVar],
        listenerNames: [String],
        notifySocket: String?,
        extra: [EnvVar] = [],
        watchdog: Duration? = nil,
        directory: String? = nil
    ) -> [String] {
        var order: [String] = []
        var values: [String: String] = [:]
        func set(_ name: String, _ value: String) {
            if values[name] == nil { order.append(name) }
            values[name] = value
        }
        for entry in inherited {
            guard let eq = entry.firstIndex(of: "=") else { continue }
            let name = String(entry[..<eq])
            guard !isStripped(name) else { continue }
            set(name, String(entry[entry.index(after: eq)...]))
        }
        for v in account { set(v.name, v.value) }
        for v in fileVariables { set(v.name, v.value) }
        for v in configVariables { set(v.name, v.value) }
        for v in extra { set(v.name, v.value) }
        // The worker's own protocol variables come last and cannot be overridden.
        for name in order where isStripped(name) { values[name] = nil }
        order.removeAll { isStripped($0) }
        if !listenerNames.isEmpty {
            set("LISTEN_FDS", String(listenerNames.count))
            set("LISTEN_FDNAMES", listenerNames.joined(separator: ":"))
        }
        if let notifySocket { set("NOTIFY_SOCKET", notifySocket) }
        if let watchdog { set("WATCHDOG_USEC", String(microseconds(watchdog))) }
        // The folder it starts in, as a shell's PWD names it; baton's own PWD and OLDPWD named
        // where baton was started (a releases audit: `PWD=/tmp/audit OLDPWD=/work/main` in a
        // worker running in releases/r4).
        if let directory {
            set("PWD", directory)
            values["OLDPWD"] = nil
            order.removeAll { $0 == "OLDPWD" }
        }
        return order.compactMap { name in values[name].map { "\(name)=\($0)" } }
    }

    /// `PWD` for a process started in `path`: the path as named, without `//` or a trailing
    /// `/`, or, when it has a `.` or `..` part, which POSIX does not allow in PWD (a shell drops
    /// such a PWD: a releases re-audit), the folder `resolve` finds.
    public static func pwd(_ path: String, resolve: (String) -> String) -> String {
        let parts = path.split(separator: "/")
        if parts.contains(where: { $0 == "." || $0 == ".." }) { return resolve(path) }
        return "/" + parts.joined(separator: "/")
    }

    /// Whole microseconds of `d` (at least 1: WATCHDOG_USEC=0 would mean "no watchdog").
    public static func microseconds(_ d: Duration) -> Int64 {
        let (seconds, atto) = d.components
        return max(1, seconds * 1_000_000 + atto / 1_000_000_000_000)
    }
}
