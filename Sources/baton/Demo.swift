import ArgumentParser
import BatonCore
import BatonSystem
import Glibc

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the supervisor on an embedded config: demo workers on 127.0.0.1.")

    // .unconditional: "-1" is the option's (refused) value, not an unknown flag.
    @Option(parsing: .unconditional, help: "Port on 127.0.0.1.")
    var port: UInt16 = 8080

    @Option(parsing: .unconditional, help: "Number of workers.")
    var workers: Int = 4

    @Option(help: "Directory for the demo's release folder, runtime files and control socket.")
    var directory: String = "/tmp/baton-demo"

    @Option(name: .customLong("resume"), help: .hidden)
    var resume: Int32?

    func validate() throws {
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be between 1 and 64") }
        // "" or "/" made the demo use /releases, /state and /run: a folder of its own only, short
        // enough for its control socket's path (sun_path holds 107 bytes).
        let folder = DirectoryRules.normalize(directory)
        guard directory.hasPrefix("/"), !DirectoryRules.systemDirectories.contains(folder) else {
            throw ValidationError("--directory must be an absolute path to a folder of the demo's own, not \"\(directory.prefix(64))\"")
        }
        // Its runtime directory, `/run` in it, holds the workers' notify sockets.
        let longest = WorkerContract.maxRuntimeDirectoryLength - "/run".utf8.count
        guard folder.utf8.count <= longest else {
            throw ValidationError("--directory must be at most \(longest) bytes (its sockets' paths are limited)")
        }
    }

    func run() throws {
        // The folder as validated: `/tmp//x/./` is `/tmp/x` (its sockets' paths stay short).
        let directory = DirectoryRules.normalize(self.directory)
        let worker = Self.siblingExecutable("baton-demo-worker")
        let release = directory + "/releases/demo-1"
        do {
            try Filesystem.makeDirectory(release, mode: 0o755)
        } catch {
            throw BatonExit(code: BatonExitCode.usage, message: "\(error)")
        }
        let socket = directory + "/control.sock"
        var config = BatonConfig.make(
            app: AppConfig(
                name: "demo", command: [worker, "--release", "demo-1"], directory: release, workers: workers, user: nil,
                group: nil, environmentFile: nil, startConcurrency: 2, environment: [], runtimeDirectory: directory + "/run",
                stateDirectory: directory + "/state"))
        config.listen.addresses = [.tcp(host: "127.0.0.1", port: port)]
        config.control.socket = socket
        config.readiness.timeout = .seconds(10)
        config.stop.timeout = .seconds(10)
        let me = Self.siblingExecutable("baton")
        // Before the banner (a re-audit: printed, then the refusal).
        if let problem = ProcFS.ownNamespaceProblem() { throw BatonExit(code: BatonExitCode.usage, message: problem) }
        if resume == nil {
            // --port 0: the kernel's choice, known once bound (a numeric audit: `curl …:0/`).
            let shown = port == 0 ? "PORT" : "\(port)"
            let place = port == 0 ? "a free port of 127.0.0.1 (the \"listening\" line below names it)" : "127.0.0.1:\(port)"
            writeAll(
                2,
                Array(
                    """
                    baton demo: \(workers) demo workers on \(place) (pid \(getpid())). From a second terminal:
                      curl -s http://127.0.0.1:\(shown)/            # answered by one of the workers (pid=...)
                      \(me) status --socket \(socket)
                      \(me) reload --socket \(socket)   # rolling restart, zero failed requests
                      kill -9 <a worker pid>; \(me) status --socket \(socket)
                    Ctrl-C (or kill \(getpid())) stops everything.

                    """.utf8))
        }
        try runSupervisor(config: config, configPath: nil, resume: resume, reload: nil)
    }

    /// A binary next to this one (the build folder holds both).
    static func siblingExecutable(_ name: String) -> String {
        guard let exe = Filesystem.linkTarget("/proc/self/exe") else { return name }
        return String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]) + "/" + name
    }
}
