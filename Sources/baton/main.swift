import ArgumentParser
import BatonSystem
import Glibc

// Before anything opens a descriptor: a closed 0, 1 or 2 gets /dev/null (a command's closed
// stdout is still an error at its end).
let closedAtStart = StandardStreams.openClosed()

// Swift reads a process's arguments from /proc/self/cmdline: without /proc they are empty,
// and `baton serve` printed the help and exited 0 (a re-audit).
if CommandLine.arguments.isEmpty {
    LogWriter.standardError.append(Array("baton: /proc is not mounted: baton reads its arguments and its processes there\n".utf8))
    exit(2)
}

// Swift reads arguments that are not UTF-8 with U+FFFD in place of their bytes: a path or an
// `--env` value would silently name something else (a names audit: a worker got
// `T_B=a\357\277\275b` for `a\xffb`, and `--release …/bad\xff` said "is not a directory").
for i in 1..<Int(CommandLine.argc) {
    guard let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) == nil else { continue }
    let shown = LogText.escaped(String(decoding: UnsafeRawBufferPointer(start: raw, count: strlen(raw)).map { $0 < 0x80 ? $0 : 0x3F }, as: UTF8.self))
    let message = "argument \(i) (\(shown), ASCII shown, ? for any other byte) is not UTF-8: baton takes paths, names and values in UTF-8"
    // With --json, stdout carries the error too (a re-audit: nothing on stdout).
    if asksForJSON { printJSONError(message, code: 2) }
    LogWriter.standardError.append(Array("baton: \(message)\n".utf8))
    exit(2)
}

// The supervisor handles these through its signalfd: block them before any
// thread exists, so every later thread inherits the mask and none of them
// takes a SIGTERM with the default action. Client verbs keep the defaults
// (Ctrl-C ends a `baton deploy` client; the deploy goes on in the daemon).
if CommandLine.arguments.count > 1, ["serve", "demo"].contains(CommandLine.arguments[1]) {
    CBatonLinuxShim.blockSignals(CBatonLinuxShim.supervisorSignals)
}
signal(SIGPIPE, SIG_IGN)
// Progress lines reach CI logs (pipes) as they happen, not at exit.
CBatonLinuxShim.lineBufferStdout()

/// The error line before a non-zero exit, through the same non-blocking writer
/// as the log: a stderr pipe that is full and never read gets up to 2 s (the
/// flush at exit) to take it, instead of holding baton (and its exit) forever.
func lastWords(_ text: String) {
    LogWriter.standardError.append(Array(text.utf8))
}

do {
    var command = try Baton.parseAsRoot()
    try command.run()
    // (A re-audit: `baton status >&-` exited 0, its output gone.)
    if let failure = closedAtStart.contains(1) ? "could not write to stdout: it was closed" : StandardStreams.outputFailure() {
        lastWords("baton: \(failure)\n")
        exit(1)
    }
    exit(0)
} catch let exit as BatonExit {
    if let message = exit.message {
        if asksForJSON { printJSONError(message, code: exit.code) }
        lastWords("baton: \(message)\n")
    }
    Glibc.exit(exit.code)
} catch {
    // Usage errors, --help and --version come here. Help and version exit 0;
    // anything else is a usage error: exit 2 with argument-parser's message.
    let code = Baton.exitCode(for: error)
    var message = Baton.fullMessage(for: error)
    if message.hasPrefix("Error: ") { message.removeFirst(7) }
    if code == ArgumentParser.ExitCode.success {
        if !message.isEmpty { print(message) }
        exit(0)
    }
    // One line: argument-parser's message without the usage text after it (a newline in a
    // value the message quotes is shown as \n), and the hint.
    // (Standard library only: Foundation's string search would link libFoundation into baton.)
    // (argument-parser adds "\nHelp:  --option …" after a bad value: an audit saw it as a literal \n.)
    let usage = message.indices.first {
        message[$0...].hasPrefix("\nUsage:") || message[$0...].hasPrefix("\n  See '") || message[$0...].hasPrefix("\nHelp:")
    }
    var first = String(message[..<(usage ?? message.endIndex)].flatMap { $0 == "\n" ? ["\\", "n"] : [$0] })
    // A mistyped verb: say so, not what argument-parser made of the rest ("Unknown option
    // '--socket'" for `baton statuss --socket X`).
    let names = Baton.configuration.subcommands.map { $0.configuration.commandName ?? "" } + ["help"]
    if let verb = CommandLine.arguments.dropFirst().first, !verb.hasPrefix("-"), !names.contains(verb) {
        first = "unknown command '\(LogText.escaped(String(verb.prefix(64))))' (one of: \(names.filter { !$0.hasPrefix("__") }.joined(separator: ", ")))"
        if let hint = PeerVerbs.hints[verb] { first += "; \(hint)" }
    } else if let verb = CommandLine.arguments.dropFirst().first,
        let command = Baton.configuration.subcommands.first(where: { $0.configuration.commandName == verb }),
        let unlisted = unlistedOption(CommandLine.arguments.dropFirst(2), help: Baton.helpMessage(for: command))
    {
        // argument-parser looks for unknown options only once the command's own checks passed,
        // so a mistyped one read as the option missing (an operator audit: `status --control
        // X` said "say which daemon: --app NAME, --config FILE or --socket PATH").
        first = "Unknown option '\(LogText.escaped(String(unlisted.prefix(64))))'" + (unlisted == "-c" ? " (the config is --config FILE)" : "")
    }
    if asksForJSON { printJSONError(first, code: BatonExitCode.usage) }
    lastWords("baton: \(first)\(usage != nil ? "; run 'baton help' for usage" : "")\n")
    exit(BatonExitCode.usage)
}

/// What the verbs of other supervisors' command lines are with baton (a habits audit: `baton
/// restart`, `stop`, `scale` said "unknown command" and nothing more). In a type: a global of
/// main.swift is set where the top-level code reaches it, after the code above that reads it.
enum PeerVerbs {
    static let hints = [
        "restart": "a rolling restart of the workers is baton reload; of baton itself, systemctl restart (or SIGTERM, then baton serve)",
        "stop": "baton serve stops on SIGTERM or SIGINT (systemctl stop)", "start": "baton serve starts the workers",
        "scale": "the number of workers is [app] workers, applied at a restart of baton",
        "version": "baton --version", "logs": "baton logs to stderr (journalctl -u UNIT under systemd)",
        "rollout": "baton deploy --release DIR", "kill": "baton serve stops on SIGTERM or SIGINT (systemctl stop)",
    ]
}

/// The first `--name` in `arguments` that `help` does not list (nil: none); what follows
/// `--command` or `--` is the app's.
func unlistedOption(_ arguments: ArraySlice<String>, help: String) -> String? {
    for argument in arguments {
        if argument == "--" || argument == "--command" { return nil }
        // `-c FILE` (gunicorn's, puma's): baton's options are long ones but -h.
        if argument == "-c" { return "-c" }
        guard argument.hasPrefix("--"), argument.count > 2 else { continue }
        let name = String(argument.prefix { $0 != "=" })
        var rest = help[...]
        var listed = false
        while !listed, let found = rest.firstRange(of: name) {
            let next = rest[found.upperBound...].first
            listed = next.map { !($0.isLetter || $0.isNumber || $0 == "-") } ?? true
            rest = rest[found.upperBound...]
        }
        if !listed { return name }
    }
    return nil
}
