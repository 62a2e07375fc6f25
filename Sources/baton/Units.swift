import ArgumentParser
import BatonCore
import Glibc

/// `baton units --config FILE`: the socket and service units for one app, ready to install.
///
/// Named `SystemdUnits`, not `Units`: BatonCore's `Units` (durations and sizes) is used
/// unqualified across this target, and a `Units` command here would shadow it.
struct SystemdUnits: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "units",
        abstract: "Print a socket and a service unit for one app, ready to install.",
        discussion: """
            The socket unit listens on the config's [listen] addresses and hands them to baton by \
            socket activation; the service unit runs `baton serve` on the config (Type=notify, \
            synchronous ExecReload=baton reload, TimeoutStopSec= stop.timeout + 15 s). Each file is \
            preceded by a line `# file: NAME`. With --no-socket, only the service: baton binds the \
            addresses itself and keeps them in systemd's FD store (kept across `systemctl restart` and \
            a crash, not across stop + start). Exit 2 with one line for a bad config.
            """)

    @Option(help: "The app's config file (TOML); the units name it by its absolute path.")
    var config: String

    @Option(help: "The baton binary the units run (default: this baton as invoked, found through PATH).")
    var binary: String?

    @Flag(help: "Print only the service: baton binds [listen] addresses itself and keeps them in systemd's FD store.")
    var noSocket = false

    @Flag(help: "Units for a user's manager (systemctl --user): the service is wanted by default.target.")
    var user = false

    func validate() throws {
        if let binary, !binary.hasPrefix("/") { throw ValidationError("--binary must be an absolute path") }
    }

    func run() throws {
        let loaded = try loadConfig(config)
        let files = try UnitFiles(
            config: loaded, configPath: absolutePath(config),
            binary: binary ?? Self.invokedExecutable(), socketUnit: !noSocket, user: user)
        // A user's service cannot make /run/baton (a pid-1 audit: `enable` under a user's
        // manager warned of multi-user.target, and the default socket failed).
        if user && loaded.control.socket == BatonConfig.defaultControlSocket(appName: loaded.app.name) {
            lastWords(
                "note: [control] socket is the default \(loaded.control.socket), which a user's service cannot make: set it (under $XDG_RUNTIME_DIR, say)\n"
            )
        }
        for file in files.all {
            print("# file: \(file.name)")
            print(file.text, terminator: "")
        }
    }

    /// This baton's path as the user invoked it: argv[0] made absolute, or looked up in PATH
    /// (a symlink such as /usr/local/bin/baton stays a symlink, so upgrades that move it keep
    /// working); /proc/self/exe when neither works.
    static func invokedExecutable() -> String {
        let argv0 = CommandLine.arguments.first ?? "baton"
        if argv0.contains("/" as Character) { return absolutePath(argv0) }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where directory.hasPrefix("/") {
            let candidate = "\(directory)/\(argv0)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return Demo.siblingExecutable(argv0)
    }
}

/// `path` made absolute against the working directory, with `.` and `..` removed lexically
/// (symlinks are kept: the unit should name the path the admin chose).
func absolutePath(_ path: String) -> String {
    var full = path
    if !path.hasPrefix("/") {
        var buffer = [CChar](repeating: 0, count: 4096)
        let cwd = getcwd(&buffer, buffer.count).map { _ in String(cString: buffer) } ?? "/"
        full = cwd + "/" + path
    }
    var parts: [Substring] = []
    for part in full.split(separator: "/") {
        switch part {
        case ".": continue
        case "..": _ = parts.popLast()
        default: parts.append(part)
        }
    }
    return "/" + parts.joined(separator: "/")
}

/// The text of `baton-NAME.socket` and `baton-NAME.service` for one config.
struct UnitFiles {
    /// A unit file: its name and content (ending in a newline).
    struct File {
        var name: String
        var text: String
    }

    /// The socket unit (nil without one: baton binds the addresses and uses the FD store).
    let socket: File?
    /// The service unit.
    let service: File
    /// Both, socket first (the order to install and start them in).
    var all: [File] { [socket, service].compactMap { $0 } }

    /// The name workers see in LISTEN_FDNAMES for the socket unit's sockets; the shipped
    /// template uses it too. Not in the form of baton's own names for sockets it bound
    /// (`127.0.0.1_8080`), so the two never mix up.
    static let fileDescriptorName = "web"

    /// Added to `stop.timeout` for TimeoutStopSec=: baton's own shutdown after the last drain.
    static let stopMargin: Duration = .seconds(15)

    /// Renders both units; throws a usage error (exit 2) for what a unit file cannot express.
    init(config: BatonConfig, configPath: String, binary: String, socketUnit: Bool = true, user: Bool = false) throws {
        guard !config.listen.addresses.isEmpty else {
            throw BatonExit(
                code: BatonExitCode.usage,
                message: "\(config.sourcePath): listen.addresses is empty: the socket unit needs the addresses to listen on")
        }
        for value in [configPath, binary, config.control.socket] + config.listen.addresses.map(\.description) {
            if value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                throw BatonExit(code: BatonExitCode.usage, message: "cannot write \(Self.quote(value)) into a unit file: control character")
            }
        }
        let name = "baton-\(config.app.name)"
        socket = socketUnit ? File(name: "\(name).socket", text: Self.socketUnit(config, name: name, configPath: configPath, user: user)) : nil
        service = File(
            name: "\(name).service",
            text: Self.serviceUnit(config, name: name, configPath: configPath, binary: binary, socketUnit: socketUnit, user: user))
    }

    /// `baton-NAME.socket`: the `[listen]` addresses, held by systemd.
    private static func socketUnit(_ config: BatonConfig, name: String, configPath: String, user: Bool) -> String {
        var lines = config.listen.addresses.map { address -> String in
            switch address {
            case .tcp: return "ListenStream=\(address.description)"
            case .unix(let path): return "ListenStream=\(escapeSpecifiers(path))"
            }
        }
        if config.listen.addresses.contains(where: \.isUnix) {
            lines.append("SocketMode=\(octal(config.listen.socketMode))")
            if let group = config.listen.socketGroup { lines.append("SocketGroup=\(escapeSpecifiers(group))") }
        }
        // As baton binds them itself: `[::]:P` took IPv4 clients too under the unit (systemd
        // follows net.ipv6.bindv6only) and not without it, and `0.0.0.0:P` beside it failed (a
        // listeners audit).
        if config.listen.addresses.contains(where: { if case .tcp(let host, _) = $0 { host.contains(":" as Character) } else { false } }) {
            lines.append("BindIPv6Only=ipv6-only")
        }
        lines += ["Backlog=\(config.listen.backlog)", "FileDescriptorName=\(fileDescriptorName)", "Service=\(name).service"]
        return """
            # Generated by `baton units --config \(configPath)\(user ? " --user" : "")`.
            # Holds the app's listening sockets: restarting or crashing baton never closes them.
            [Unit]
            Description=baton listening sockets of \(config.app.name)

            [Socket]
            \(lines.joined(separator: "\n"))

            [Install]
            WantedBy=sockets.target

            """
    }

    /// `baton-NAME.service`: the shipped template's settings, with this app's paths and
    /// `TimeoutStopSec=` from its `stop.timeout`; without a socket unit, baton binds the
    /// addresses and keeps them in the FD store (`FileDescriptorStoreMax=`).
    private static func serviceUnit(_ config: BatonConfig, name: String, configPath: String, binary: String, socketUnit: Bool, user: Bool) -> String {
        let ordering =
            socketUnit
            ? "Requires=\(name).socket\nAfter=\(name).socket network.target"
            : "# No socket unit: baton binds [listen] addresses and keeps them in the FD store.\nAfter=network.target"
        return """
            # Generated by `baton units --config \(configPath)\(socketUnit ? "" : " --no-socket")\(user ? " --user" : "")`.
            # `systemctl reload` = rolling restart (fails if it failed); see systemd/README.md.
            [Unit]
            Description=baton: \(config.app.name) workers
            \(ordering)

            [Service]
            Type=notify
            NotifyAccess=main
            ExecStart=\(command([binary, "serve", "--config", configPath]))
            ExecReload=\(command([binary, "reload", "--socket", config.control.socket, "--app", config.app.name]))
            KillMode=mixed
            TimeoutStartSec=90s
            TimeoutStopSec=\(seconds(config.stop.timeout + stopMargin))
            WatchdogSec=30s
            TimeoutAbortSec=10s
            Restart=on-failure
            RestartPreventExitStatus=2
            OOMPolicy=continue
            FileDescriptorStoreMax=16
            MemoryAccounting=yes
            \(directoryLines(config, user: user).joined(separator: "\n"))

            [Install]
            WantedBy=\(user ? "default.target" : "multi-user.target")

            """
    }

    /// `RuntimeDirectory=` and `StateDirectory=` for the folders baton uses that systemd makes:
    /// `baton/NAME` when the config leaves a folder to systemd (baton then reads
    /// `$RUNTIME_DIRECTORY`, `$STATE_DIRECTORY`), a configured folder under systemd's base for it
    /// (`/run`, `/var/lib`; a user's `$XDG_RUNTIME_DIR`) by its own name, and the control socket's
    /// folder when it is there too. A folder elsewhere gets a comment instead: a directive naming
    /// `baton/NAME` made a folder nothing used (a config audit), and under `ProtectSystem=strict`
    /// the folder baton does use needs `ReadWritePaths=`.
    static func directoryLines(_ config: BatonConfig, user: Bool) -> [String] {
        let own = "baton/\(config.app.name)"
        let runBase = user ? (getenv("XDG_RUNTIME_DIR").map { String(cString: $0) } ?? "/run/user/\(getuid())") : "/run"
        func under(_ base: String, _ path: String) -> String? {
            guard path.hasPrefix(base + "/"), path.count > base.count + 1 else { return nil }
            return String(path.dropFirst(base.count + 1))
        }
        // ReadWritePaths= needs the folder to exist (a re-audit: status 226 at the first start).
        func elsewhere(_ key: String, _ folder: String, _ directive: String) -> String {
            "# \(key) \(folder) is not \(directive)'s to make: baton makes it (under ProtectSystem=strict, make it first and add ReadWritePaths=\(escapeSpecifiers(folder)))"
        }
        var lines: [String] = []
        var runtime: [String] = []
        if let folder = config.app.runtimeDirectory {
            if let name = under(runBase, folder) {
                runtime.append(name)
            } else {
                lines.append(elsewhere("[app] runtime_directory", folder, "RuntimeDirectory="))
            }
        } else {
            runtime.append(own)
        }
        // The control socket's folder, when it is not the runtime directory, is not listed: beside
        // baton/NAME it could come first in $RUNTIME_DIRECTORY, whose first entry baton takes (a
        // re-audit: baton's files went there), and it may be another service's, which systemd
        // would remove at every stop (a second re-audit: `/run/nginx`).
        if let folder = parentFolder(config.control.socket), folder != config.app.runtimeDirectory ?? runBase + "/" + own {
            lines.append(elsewhere("[control] socket's folder", folder, "RuntimeDirectory="))
        }
        if !runtime.isEmpty { lines.append("RuntimeDirectory=\(runtime.map(escapeSpecifiers).joined(separator: " "))") }
        if let folder = config.app.stateDirectory {
            if !user, let name = under("/var/lib", folder) {
                lines.append("StateDirectory=\(escapeSpecifiers(name))")
            } else {
                lines.append(elsewhere("[app] state_directory", folder, "StateDirectory="))
            }
        } else {
            lines.append("StateDirectory=\(own)")
        }
        return lines
    }

    /// The folder `path` is in (nil for a path without one).
    static func parentFolder(_ path: String) -> String? {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return nil }
        return String(path[..<slash])
    }

    /// A command line for ExecStart=/ExecReload=: every word quoted when it needs it, `%`
    /// and `$` escaped so systemd takes them literally.
    static func command(_ words: [String]) -> String {
        words.map { word in
            var text = escapeSpecifiers(word).replacingOccurrences("$", "$$")
            if text.isEmpty || text.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" || $0 == "\\" || $0 == ";" }) {
                text = "\"" + text.replacingOccurrences("\\", "\\\\").replacingOccurrences("\"", "\\\"") + "\""
            }
            return text
        }.joined(separator: " ")
    }

    /// `%` doubled: unit files expand `%i`, `%n` ... everywhere.
    static func escapeSpecifiers(_ s: String) -> String { s.replacingOccurrences("%", "%%") }

    /// A duration as systemd reads it: whole seconds as `45s`, else milliseconds (`15500ms`).
    static func seconds(_ d: Duration) -> String {
        let (s, atto) = d.components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        return ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms"
    }

    /// A file mode as four octal digits (`0660`).
    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// `s` in double quotes with non-printable characters escaped, for error messages.
    static func quote(_ s: String) -> String { "\"" + s.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\"" }
}

extension String {
    /// Every occurrence of `target` replaced (FoundationEssentials-free).
    fileprivate func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
