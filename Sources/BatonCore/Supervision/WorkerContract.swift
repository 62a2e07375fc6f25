/// What baton places in every worker besides its listening sockets, fixed
/// numbers a worker must leave alone.
public enum WorkerContract {
    /// A duplicate of the read end of the worker's own stdout/stderr pipe.
    /// baton reads its output from its own copy; this one exists only so the
    /// pipe keeps a reader when baton dies outside systemd: without it the
    /// worker's next log line raises SIGPIPE and kills it. The next
    /// `baton serve` takes it with pidfd_getfd and relays the orphan's output.
    /// High, so it never collides with fds 3.. (the sockets), and below 1024,
    /// the usual RLIMIT_NOFILE soft limit (above the limit it is left out).
    public static let outputReaderFD: Int32 = 1000

    /// The notify fields baton acts on, as its log names them.
    public static let supportedNotifyFields =
        "READY=1, STATUS=, STOPPING=1, WATCHDOG=1, WATCHDOG=trigger, EXTEND_TIMEOUT_USEC= while starting, X_BATON_REQUESTS="

    /// Fields of sd_notify(3) baton does not act on: a worker that sends one is told so once in
    /// the log (a contract audit: an app moved from a `Type=notify` unit that sent `MAINPID=` or
    /// `FDSTORE=1` got nothing, with no word). BARRIER=1 is not here: its descriptor closed is
    /// the answer it waits for.
    public static let unsupportedNotifyFields: Set<String> = [
        "MAINPID", "RELOADING", "ERRNO", "BUSERROR", "VARLINKERROR", "EXIT_STATUS", "MONOTONIC_USEC", "WATCHDOG_USEC",
        "FDSTORE", "FDSTOREREMOVE", "FDNAME", "FDPOLL", "NOTIFYACCESS",
    ]

    /// The longest argument or `NAME=value` an `execve` takes (Linux's MAX_ARG_STRLEN, 32
    /// pages, less its NUL): a longer one fails every start with "Argument list too long" (a
    /// names audit: a 200,000-byte `[app.environment]` value passed check-config).
    public static let maxArgumentBytes = 131_071

    /// Why `argument` (a command element, or `NAME=value`) cannot reach a worker; nil if it can.
    public static func argumentProblem(_ argument: String) -> String? {
        let bytes = argument.utf8.count
        guard bytes > maxArgumentBytes else { return nil }
        return "is \(bytes) bytes: an execve takes at most \(maxArgumentBytes) per argument or variable (Linux's MAX_ARG_STRLEN)"
    }

    /// The fields of one notify datagram: split at every LF and CR, empty ones dropped, as
    /// systemd splits them (a fuzz audit: a worker sending `READY=1\r\n` was never ready; Swift
    /// splitting a String at "\n" keeps a "\r\n" whole).
    public static func notifyFields(_ bytes: [UInt8]) -> [Substring] {
        String(decoding: bytes, as: UTF8.self).utf8.split(whereSeparator: { $0 == 0x0A || $0 == 0x0D }).compactMap(Substring.init)
    }

    /// Capacity asked for each worker's output pipe (F_SETPIPE_SZ, capped by
    /// /proc/sys/fs/pipe-max-size): what an orphan can write before the next
    /// baton drains it without blocking (the default 64 KiB is a few hundred
    /// log lines).
    public static let outputPipeCapacity = 1 << 20

    /// The file name of a worker's notify socket in `RUNTIME/notify`: its slot, then its
    /// generation and baton's pid in base 36 (`w3-1z-2hxuo.sock`), short enough that the longest
    /// (slot 1023, generation up to 36^7, pid up to 36^5) fits ``maxRuntimeDirectoryLength``.
    public static func notifySocketName(slot: Int, generation: Int, batonPID: Int32) -> String {
        "w\(slot)-\(String(generation, radix: 36))-\(String(batonPID, radix: 36)).sock"
    }

    /// Whether `name` is a worker's notify socket of the baton of pid `batonPID`, as
    /// ``notifySocketName(slot:generation:batonPID:)`` names it, or in decimal as an older
    /// baton did (`w3-12-4711.sock`): what a take-over removes of a dead baton's.
    public static func isNotifySocketName(_ name: String, batonPID: Int32) -> Bool {
        let suffixes = ["-\(String(batonPID, radix: 36)).sock", "-\(batonPID).sock"]
        guard name.hasPrefix("w"), let suffix = suffixes.first(where: { name.hasSuffix($0) }) else { return false }
        let middle = name.dropFirst().dropLast(suffix.count).split(separator: "-", omittingEmptySubsequences: false)
        return middle.count == 2 && middle.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isNumber || $0.isLowercase) } })
    }

    /// A mold's notify socket's file name (`mold-…`, counted as for workers).
    public static func moldSocketName(started: Int, batonPID: Int32) -> String {
        "mold-\(String(started, radix: 36))-\(String(batonPID, radix: 36)).sock"
    }

    /// The runtime directory's longest path, in bytes: `/notify/` and the longest socket name
    /// (`w1023-` + 7 + `-` + 5 + `.sock`, 24 bytes) must fit in a unix socket path (107 bytes).
    /// A re-audit: a runtime directory of 86 bytes passed `check-config`, then every start
    /// failed with "File name too long"; one of 84 bytes failed at the 10th deploy, when the
    /// generation in the name (then decimal) grew a digit.
    public static let maxRuntimeDirectoryLength = ListenAddress.maxUnixPathLength - "/notify/".utf8.count - 24
}
