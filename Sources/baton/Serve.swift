import ArgumentParser
import BatonCore
import BatonDaemon
import BatonSystem
import Glibc

/// Reads and validates a config file without letting its text crash this process (the TOML
/// parser runs in a child first, see `ConfigParserProcess`); with `hostChecks`, also against
/// this host (users, groups, environment file). Failures exit 2 with one line.
func loadConfig(_ path: String, hostChecks: Bool = false) throws -> BatonConfig {
    do {
        return try ConfigLoader.load(path, hostChecks: hostChecks)
    } catch let error as ConfigError where error.isTransient {
        throw BatonExit(code: BatonExitCode.failure, message: "\(error)")
    } catch {
        throw BatonExit(code: BatonExitCode.usage, message: "\(error)")
    }
}

/// The environment of this process as "K=V" entries.
func currentEnvironment() -> [String] {
    var result: [String] = []
    var p = environ
    while let entry = p.pointee {
        result.append(String(cString: entry))
        p += 1
    }
    return result
}

/// This binary's path (a replaced binary shows as "PATH (deleted)" in
/// /proc/self/exe: the path is where the new one is).
func executablePath() -> String {
    guard var path = Filesystem.linkTarget("/proc/self/exe") else { return CommandLine.arguments[0] }
    if path.hasSuffix(" (deleted)") { path.removeLast(10) }
    return path
}

/// Runs the supervisor on this (main) thread until SIGTERM.
func runSupervisor(config: BatonConfig, configPath: String?, resume: Int32?, reload: (@Sendable () throws -> BatonConfig)?) throws {
    BatonLogHandler.bootstrap()
    if let problem = ProcFS.ownNamespaceProblem() { throw BatonExit(code: BatonExitCode.usage, message: problem) }
    // Descriptors for every worker and client; the workers get the soft limit baton got.
    DescriptorLimit.raise()
    let options = Supervisor.Options(
        config: config, reloadConfig: reload, launcher: LinuxProcessLauncher(), environment: currentEnvironment(),
        executable: executablePath(), arguments: CommandLine.arguments, configPath: configPath, resumeFD: resume)
    let code: Int32
    do {
        let loop = try EventLoop()
        code = try Supervisor(options: options, loop: loop).run()
        reapLeftChildren()
    } catch let error as DirectoryError {
        // A state or runtime directory baton must not use: a setup error, like a config one.
        throw BatonExit(code: BatonExitCode.usage, message: "\(error)")
    } catch let conflict as InstanceConflict {
        throw BatonExit(code: BatonExitCode.usage, message: "\(conflict)")
    } catch let error as DaemonError {
        throw BatonExit(code: error.exitCode, message: "\(error)")
    } catch {
        throw BatonExit(code: BatonExitCode.failure, message: "\(error)")
    }
    throw BatonExit(code: code, message: nil)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the supervisor (systemd's ExecStart=).",
        discussion: "Takes the listening sockets from systemd socket activation, or binds [listen] addresses.")

    @Option(name: .long, help: "The app's config file (TOML).")
    var config: String

    @Option(name: .customLong("resume"), help: .hidden)
    var resume: Int32?

    func run() throws {
        let path = config
        do {
            // Resuming after `baton upgrade` (whose --check ran the host checks), the workers are
            // already running: a user deleted since must not make the new image exit.
            let loaded = try loadConfig(path, hostChecks: resume == nil)
            try runSupervisor(config: loaded, configPath: path, resume: resume) {
                // The same crash-proof path: a config that aborts the parser fails the reload only.
                try ConfigLoader.load(path, hostChecks: true)
            }
        } catch let exit as BatonExit {
            // Under systemd, `systemctl status` shows why it failed, not only "status=2" (a
            // systemd/CI audit): the error line is the last STATUS=.
            if let message = exit.message, exit.code != 0 { ServiceNotifier().notify("STATUS=\(message.prefix(1024))") }
            throw exit
        }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a config file; exit 0 if valid, 2 with the error if not.")

    @Argument(help: "The config file.")
    var file: String

    func run() throws {
        let config = try loadConfig(file, hostChecks: true)
        print("\(file): ok (app \(config.app.name), \(config.app.workers) workers, readiness \(config.readiness.mode.rawValue))")
        // A docs audit: "ok", then `serve` exited 2 outside socket activation.
        if config.listen.addresses.isEmpty {
            print("note: no [listen] addresses: baton serve takes its sockets from systemd socket activation (outside it, it exits 2)")
        }
        for note in Self.directoryNotes(config) { print("note: \(note)") }
    }

    /// The folders `serve` makes or writes in that this user cannot: a note each, not an error
    /// (a pid-1 audit: a user not root passed check-config, then `serve` exited 2 on
    /// /run/baton; the config may be checked by one user, a CI job, for a root service).
    static func directoryNotes(_ config: BatonConfig) -> [String] {
        guard geteuid() != 0 else { return [] }
        let socketFolder = String(config.control.socket[..<(config.control.socket.lastIndex(of: "/") ?? config.control.socket.startIndex)])
        let folders: [(String, String, Bool)] = [
            ("runtime directory", Supervisor.runtimeDirectory(for: config), config.app.runtimeDirectory == nil),
            ("state directory", Supervisor.stateDirectory(for: config), config.app.stateDirectory == nil),
            ("[control] socket's folder", socketFolder, false),
        ]
        var seen = Set<String>()
        return folders.compactMap { what, folder, isDefault in
            guard !folder.isEmpty, seen.insert(folder).inserted, let (place, reason) = Filesystem.whyNotWritable(folder) else { return nil }
            return
                "the \(what) \(folder)\(isDefault ? " (the default)" : "") cannot be made or written by uid \(geteuid()) (\(place): \(reason)): baton serve as this user exits 2; root, or systemd's RuntimeDirectory=/StateDirectory=, can"
        }
    }
}

/// After a stop, the children baton killed last (the helpers that left their worker's group)
/// may not be reaped yet: its reaper thread had no turn. They are reaped here, waited for up to
/// 1 s (an apps audit: 17 `<defunct>` left under pid 1 after a stop, which an init that does not
/// reap, a container's, keeps for good). Only after a stop: nothing of baton's runs then.
func reapLeftChildren() {
    let deadline = monotonicNow() + .seconds(1)
    while true {
        var status: Int32 = 0
        let pid = waitpid(-1, &status, WNOHANG)
        if pid > 0 { continue }
        if pid < 0 && errno == EINTR { continue }
        // None left (ECHILD), or the ones left still run after the wait.
        guard pid == 0, monotonicNow() < deadline else { return }
        usleep(10_000)
    }
}
