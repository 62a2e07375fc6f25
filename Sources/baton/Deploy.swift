import ArgumentParser
import BatonCore
import BatonDaemon
import BatonSystem
import CBatonLinux
import FoundationEssentials
import Glibc

/// A deploy or rollback followed by the CLI goes on in baton when the CLI is stopped (Ctrl-C, a
/// cancelled CI job, a dropped ssh): the CLI says so on its way out, where it ended silently
/// with 130 or 143 (a systemd/CI audit).
func sayOnInterrupt(_ kind: String, attach: String) {
    CBatonLinux_say_on_interrupt("\nbaton: interrupted: the \(kind) goes on in baton; follow it with `\(attach)`, see it with `baton status`\n")
}

/// The line a signal prints before baton answered (set before the request is sent).
func sayOnInterruptBeforeAnswer(_ kind: String, attach: String) {
    CBatonLinux_say_on_interrupt("\nbaton: interrupted before baton answered: the \(kind) may run or not; see `baton status`, follow it with `\(attach)`\n")
}

/// The command that follows the operation again: the same daemon, and the release of a deploy
/// (a CI audit: a queued deploy's job told `baton deploy --attach`, which followed the deploy
/// ahead of it, exited 0 while its own release then failed).
func attachCommand(_ location: DaemonLocation, release: String?) -> String {
    var words = ["baton", "deploy", "--attach"]
    if let release { words += ["--release", release] }
    if let socket = location.socket { words += ["--socket", socket] }
    if let app = location.app { words += ["--app", app] }
    if let config = location.config { words += ["--config", config] }
    return words.map(shellWord).joined(separator: " ")
}

/// `word` as a POSIX shell reads it back: as it is when plain, else in single quotes.
func shellWord(_ word: String) -> String {
    let plain =
        !word.isEmpty && word.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || "0123456789/._-+:,=@%".unicodeScalars.contains($0)) }
    return plain ? word : "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}

/// How long a deploy, rollback or attach waits for baton's first answer (a plan, a
/// "waiting:" line, a refusal). An operator audit: with baton stopped (SIGSTOP), or another
/// program on the socket, `deploy --timeout 3s` waited without end, and its Ctrl-C line said
/// the deploy went on in baton, which had never answered.
let firstAnswerTimeout: Duration = .seconds(30)

/// Streams an operation's progress lines and turns its final reply into an
/// exit code: the same for deploy, rollback and attach. `interrupted`: what the operation is
/// called in the line a signal prints once baton answered (nil: no line, a dry run);
/// `starts`: the request starts one (not an attach or a dry run, which start nothing);
/// `plan`: a dry run, whose details are its plan (stdout) even when it says no. `attachOnlyOnceRunning`:
/// the attach command follows the operation only once it runs (a rollback's: a queued one's
/// would follow the operation ahead of it, a re-audit), so a signal while it waits says so.
func followOperation(
    _ client: inout ControlClient, json: Bool, interrupted kind: String? = nil, attach: String = "baton deploy --attach", starts: Bool = false,
    plan: Bool = false, attachOnlyOnceRunning: Bool = false
) throws {
    // A client with its own bound per line (upgrade's) keeps it.
    let boundsFirstAnswer = client.timeout == nil
    if boundsFirstAnswer { client.setTimeout(firstAnswerTimeout) }
    var answered = false
    while true {
        let reply: ControlReply
        do {
            reply = try client.next()
        } catch let exit as BatonExit where boundsFirstAnswer && !answered && exit.code == BatonExitCode.timeout {
            throw BatonExit(
                code: BatonExitCode.timeout,
                message:
                    "the daemon at \(client.path) did not answer within \(Units.formatDuration(firstAnswerTimeout))"
                    + (starts ? ": the \(kind ?? "operation") may still run if it wakes; see `baton status`" : "; see `baton status`")
            )
        }
        if !answered {
            answered = true
            if boundsFirstAnswer { client.setTimeout(nil) }
            if let kind { sayOnInterrupt(kind, attach: attach) }
        }
        if json { try printReplyLine(reply) }
        switch reply {
        case .progress(let line):
            if !json { print(line) }
            if let kind, attachOnlyOnceRunning {
                if line.hasPrefix("waiting:") {
                    CBatonLinux_say_on_interrupt(
                        "\nbaton: interrupted: the \(kind) stays queued in baton; see it with `baton status`, its outcome with `baton history`\n")
                } else {
                    sayOnInterrupt(kind, attach: attach)
                }
            }
        case .succeeded(let success):
            if !json {
                for line in success.details ?? [] { print(line) }
                print(success.message ?? "done")
            }
            // On stderr too when stdout failed (a CI audit: `> /dev/full` printed only "could not
            // write to stdout", exit 1, and the job could not tell its release was live).
            if StandardStreams.outputFailure() != nil { writeAll(2, Array("baton: \(success.message ?? "done")\n".utf8)) }
            return
        case .failed(let failure):
            if !json {
                for line in failure.details ?? [] {
                    if plan { print(line) } else { writeAll(2, Array("  | \(line)\n".utf8)) }
                }
            }
            throw BatonExit(code: failure.code ?? BatonExitCode.failure, message: json ? nil : failure.error)
        }
    }
}

struct Deploy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Roll every worker onto a new release, zero downtime; roll back if it does not come up.",
        discussion: """
            Prints one progress line per step for CI logs. Exit 0: every worker runs the release. \
            1: the deploy failed and was rolled back (the failing worker's output is printed). \
            2: bad arguments or release. 3: daemon unreachable. 4: --timeout passed (rolled back). \
            Killing this command does not stop the deploy: `baton deploy --attach` follows it again.
            """)

    @OptionGroup var location: DaemonLocation

    @Option(help: "The release folder (absolute path).")
    var release: String?

    @Option(parsing: .remaining, help: "argv of the new release, to the end of the line (default: [app] command).")
    var command: [String] = []

    @Option(name: .customLong("env"), help: "KEY=VALUE added to the release's environment (repeatable).")
    var environment: [String] = []

    @Option(help: "auto, surge or replace (default: [deploy] strategy).")
    var strategy: String?

    // .unconditional: "-1" is this option's (refused) value, not an unknown flag (an audit: it
    // said "Missing value for '--max-surge'").
    @Option(parsing: .unconditional, help: "Slots replaced at once with surge (default: [deploy] max_surge).")
    var maxSurge: Int?

    // .unconditional: "-1s" is this option's (refused) value, not an unknown flag.
    @Option(parsing: .unconditional, help: "Abort and roll back after this long, e.g. 10m (exit 4).")
    var timeout: String?

    @Flag(help: "Print the plan and what the deploy would meet now (start, wait or refusal); change nothing.")
    var dryRun = false

    @Flag(help: "If a deploy is in progress, queue behind it instead of failing.")
    var wait = false

    @Flag(help: "Follow the deploy in progress instead of starting one (with --release DIR: that release's deploy).")
    var attach = false

    @Flag(help: "One JSON object per line (progress events, then the result).")
    var json = false

    func validate() throws {
        if attach {
            // It follows what runs: options of a new deploy were ignored without a word.
            guard command.isEmpty, environment.isEmpty, strategy == nil, maxSurge == nil, timeout == nil, !dryRun, !wait else {
                throw ValidationError("--attach follows the deploy in progress: only --release and --json go with it")
            }
            if let release, !release.hasPrefix("/") { throw ValidationError("--release must be an absolute path") }
            return
        }
        guard let release else { throw ValidationError("--release DIR is required") }
        // `--command` at the end with nothing after it silently kept [app] command.
        if command.isEmpty, CommandLine.arguments.dropFirst().contains("--command") {
            throw ValidationError("--command needs the release's argv after it")
        }
        guard release.hasPrefix("/") else { throw ValidationError("--release must be an absolute path") }
        for e in environment where !e.contains("=" as Character) || !EnvironmentFile.isValidName(String(e.prefix { $0 != "=" })) {
            throw ValidationError("--env expects KEY=VALUE with KEY a variable name ([A-Za-z_][A-Za-z0-9_]*), got \"\(e.prefix(64))\"")
        }
        if let strategy, DeployStrategy(rawValue: strategy) == nil {
            throw ValidationError("--strategy must be auto, surge or replace")
        }
        if let timeout, let problem = Units.timeoutProblem(timeout, option: "--timeout") { throw ValidationError(problem) }
        if let maxSurge, maxSurge < 1 { throw ValidationError("--max-surge must be at least 1") }
        // An audit: the two together planned "replace, 1 slot at once", --max-surge dropped unsaid.
        if maxSurge != nil, strategy == DeployStrategy.replace.rawValue {
            throw ValidationError("--max-surge is for surge and auto; replace drains first, [deploy] max_unavailable slots at once")
        }
    }

    func run() throws {
        var client = try ControlClient(try location.endpoint(), timeout: nil)
        defer { client.close() }
        let kind = dryRun ? nil : attach ? "operation" : "deploy"
        // An attach or a dry run starts nothing: no "may run" (a re-audit).
        let again = attachCommand(location, release: release)
        if !attach && !dryRun { sayOnInterruptBeforeAnswer("deploy", attach: again) }
        if attach {
            try client.send(ControlRequest(cmd: "attach", deploy: release.map { DeployOptions(release: $0) }))
        } else {
            let env = environment.map { e in
                EnvVar(name: String(e.prefix { $0 != "=" }), value: String(e.drop { $0 != "=" }.dropFirst()))
            }
            let options = DeployOptions(
                release: release, command: command.isEmpty ? nil : command, environment: env.isEmpty ? nil : env,
                strategy: strategy, maxSurge: maxSurge, timeout: timeout, dryRun: dryRun ? true : nil, wait: wait ? true : nil)
            try client.send(ControlRequest(cmd: "deploy", deploy: options))
        }
        try followOperation(&client, json: json, interrupted: kind, attach: again, starts: !attach && !dryRun, plan: dryRun)
    }
}

struct Rollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Go back to the previous release, with the same zero-downtime procedure as a deploy.")

    @OptionGroup var location: DaemonLocation

    @Flag(help: "Queue behind a deploy in progress instead of failing.")
    var wait = false

    @Flag(help: "One JSON object per line.")
    var json = false

    func run() throws {
        var client = try ControlClient(try location.endpoint(), timeout: nil)
        defer { client.close() }
        let again = attachCommand(location, release: nil)
        sayOnInterruptBeforeAnswer("rollback", attach: again)
        try client.send(ControlRequest(cmd: "rollback", deploy: DeployOptions(wait: wait ? true : nil)))
        try followOperation(&client, json: json, interrupted: "rollback", attach: again, starts: true, attachOnlyOnceRunning: true)
    }
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Recent deploys, reloads and rollbacks with outcome, duration and who asked.")

    @OptionGroup var location: DaemonLocation

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let entries: [HistoryEntry]
        do {
            entries = try ask()
        } catch let exit as BatonExit where exit.code == BatonExitCode.unreachable {
            entries = try Self.stored(location, unreachable: exit)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(entries), as: UTF8.self))
            return
        }
        print("WHEN (UTC)            KIND      OUTCOME      DURATION  UID    RELEASE")
        for e in entries {
            let when = Self.utc(e.startedAt)
            let duration = String(format1(e.duration)) + "s"
            print(
                [
                    when, e.kind.rawValue.padded(8), e.outcome.rawValue.padded(11), duration.padded(8), (e.uid.map(String.init) ?? "-").padded(5),
                    e.release + (e.detail.map { "  (\($0))" } ?? ""),
                ].joined(separator: "  "))
        }
    }

    /// The daemon's history (the 200 kept, and the one it runs).
    private func ask() throws -> [HistoryEntry] {
        var client = try ControlClient(try location.endpoint(), timeout: .seconds(10))
        defer { client.close() }
        try client.send(ControlRequest(cmd: "history"))
        switch try client.next() {
        case .succeeded(let success):
            if case .history(let list)? = success.payload { return list }
            return []
        case .failed(let failure):
            throw BatonExit(code: failure.code ?? BatonExitCode.failure, message: failure.error)
        case .progress:
            throw BatonExit(code: BatonExitCode.failure, message: "history failed")
        }
    }

    /// With no daemon to ask, the history its state directory keeps (a day-2 audit: after a
    /// crash, or with baton stopped, `history` said only "cannot reach the daemon", exit 3, and
    /// the record was left to `history.jsonl` read by hand). Said on stderr; `--socket` names no
    /// state directory, so it stays exit 3.
    static func stored(_ location: DaemonLocation, unreachable: BatonExit) throws -> [HistoryEntry] {
        let directory: String
        var appName: String?
        if let config = location.config {
            let loaded = try loadConfig(config)
            directory = Supervisor.stateDirectory(for: loaded)
            appName = loaded.app.name
        } else if let app = location.app {
            directory = BatonConfig.defaultStateDirectory(appName: app)
            appName = app
        } else {
            throw unreachable
        }
        let path = directory + "/history.jsonl"
        // A baton that ran but recorded nothing yet: none (a re-audit: exit 3).
        let none = access(path, F_OK) != 0 && errno == ENOENT && access(directory, R_OK | X_OK) == 0
        // Read, not only `access`ed (a state audit: a folder in its place printed an empty
        // history, exit 0).
        guard none || ProcFS.read(path) != nil else {
            let failure = errno
            let why = access(directory, F_OK) == 0 ? String(cString: strerror(failure)) : "no state directory"
            throw BatonExit(code: BatonExitCode.unreachable, message: "\(unreachable.message ?? ""); \(path): \(why)")
        }
        // A state directory baton may not write in is read all the same.
        let store: StateStore?
        do { store = try StateStore(directory: directory) } catch { store = StateStore.readable(directory, refused: error) }
        // Another app's state directory is refused, as `serve` and `check-config` refuse it (a
        // multi-app audit: the history of the app whose release.json it holds, exit 0).
        if let appName, let other = StateStore.recordedApp(in: directory), other != appName {
            throw BatonExit(
                code: BatonExitCode.usage, message: "\(DirectoryError(path: directory, reason: .otherApp(other), key: "app.state_directory"))")
        }
        let entries = store?.loadHistory() ?? []
        let note =
            "baton: \(unreachable.message ?? "cannot reach the daemon"): its history as \(path) keeps it (an operation baton ran when it stopped is in it once baton starts again)\n"
        writeAll(2, Array(note.utf8))
        return entries
    }

    static func utc(_ t: Double) -> String {
        var time = time_t(t)
        var tmv = tm()
        gmtime_r(&time, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday)) \(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))"
    }
}

/// One decimal.
func format1(_ v: Double) -> String {
    let tenths = Int((v * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
