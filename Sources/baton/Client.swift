import ArgumentParser
import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc

/// How client verbs find the daemon: --socket, --config, or --app.
struct DaemonLocation: ParsableArguments {
    @Option(help: "The app name (control socket /run/baton/NAME/control.sock).")
    var app: String?

    @Option(help: "The app's config file (its [control] socket).")
    var config: String?

    @Option(help: "The control socket path.")
    var socket: String?

    func validate() throws {
        let given = [app, config, socket].compactMap { $0 }.count
        if given == 0 { throw ValidationError("say which daemon: --app NAME, --config FILE or --socket PATH") }
        // `--socket PATH --app NAME`: that socket, whose daemon must be that app's (the units
        // `baton units` writes reload so: a multi-app audit saw a `--socket` reload, which names
        // no app, restart another app's workers through a socket path both configs named).
        if given > 1, !(given == 2 && socket != nil && app != nil) {
            throw ValidationError("give only one of --app, --config, --socket (or --socket with the --app it must be)")
        }
        if let app, !BatonConfig.isValidAppName(app) { throw ValidationError("--app \(BatonConfig.appNameRule), got \"\(app.prefix(64))\"") }
        if socket?.isEmpty == true { throw ValidationError("--socket must not be empty") }
        if config?.isEmpty == true { throw ValidationError("--config must not be empty") }
    }

    func socketPath() throws -> String { try endpoint().socket }

    /// The control socket, and the app whose daemon must answer on it: the config's `[app]
    /// name` or `--app`; nil with `--socket` (a day-2 audit: a config naming another app's
    /// socket deployed into that app, exit 0).
    func endpoint() throws -> (socket: String, app: String?) {
        if let socket { return (socket, app) }
        if let config {
            let loaded = try loadConfig(config)
            return (loaded.control.socket, loaded.app.name)
        }
        return (BatonConfig.defaultControlSocket(appName: app ?? ""), app)
    }
}

/// A blocking client of the control socket (the CLI is not the daemon: it may block).
struct ControlClient {
    let path: String
    let fd: Int32
    /// How long one reply line may take in all (each read is bounded by what is left of it); nil: no limit.
    private(set) var timeout: Duration?
    private var buffer: [UInt8] = []
    /// The longest reply line taken (a status of hundreds of workers is well under 1 MiB).
    static let maxLineBytes = 64 << 20

    /// The app each request names (`ControlRequest.app`): a daemon of another app refuses it.
    let app: String?

    /// A client of `endpoint`'s socket whose requests name its app.
    init(_ endpoint: (socket: String, app: String?), timeout: Duration?) throws {
        try self.init(path: endpoint.socket, app: endpoint.app, timeout: timeout)
    }

    init(path: String, app: String? = nil, timeout: Duration?) throws {
        self.path = path
        self.app = app
        self.timeout = timeout
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BatonExit(code: BatonExitCode.unreachable, message: "socket: \(String(cString: strerror(errno)))") }
        if Sockets.connectUnix(fd, path) != 0 {
            let e = errno
            Glibc.close(fd)
            // The socket's mode keeps this user out: a refusal, as the daemon's own (exit 1), not
            // "daemon down" (a pid-1 audit: exit 3 for a user outside [control] group).
            if e == EACCES || e == EPERM {
                throw BatonExit(
                    code: BatonExitCode.failure,
                    message:
                        "permission denied: cannot connect to \(path): \(String(cString: strerror(e))) (the socket lets in root, baton's user and [control] group)"
                )
            }
            throw BatonExit(code: BatonExitCode.unreachable, message: "cannot reach the daemon at \(path): \(String(cString: strerror(e)))")
        }
        if let timeout { setReceiveTimeout(timeout) }
    }

    /// Bounds each later reply line by `limit` (nil: no limit).
    mutating func setTimeout(_ limit: Duration?) {
        timeout = limit
        setReceiveTimeout(limit)
    }

    /// Bounds the next reads by `limit` (at least 1 ms: 0 would mean no limit; nil: none).
    private func setReceiveTimeout(_ limit: Duration?) {
        guard let limit else {
            var none = timeval(tv_sec: 0, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
            return
        }
        let (s, atto) = max(limit, .milliseconds(1)).components
        var tv = timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    mutating func send(_ request: ControlRequest) throws {
        var request = request
        if request.app == nil { request.app = app }
        let line = ControlProtocol.encodeLine(request)
        var sent = 0
        while sent < line.count {
            // A large request (up to ControlProtocol.maxRequestBytes of --env) may take several sends.
            let n = line[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                continue
            }
            let e = n < 0 ? errno : EPIPE
            if e == EINTR { continue }
            // A daemon that refused the connection (too many clients) or the request (too
            // large) wrote why before closing: that reason, not "Broken pipe", is the error.
            if e == EPIPE || e == ECONNRESET, let reply = try? nextLine() {
                if let refusal = refusal(reply) { throw refusal }
                if case .failed(let failure) = reply { throw BatonExit(code: failure.code ?? BatonExitCode.failure, message: failure.error) }
            }
            throw BatonExit(code: BatonExitCode.unreachable, message: "cannot send to the daemon at \(path): \(String(cString: strerror(e)))")
        }
    }

    /// The next line from the daemon, decoded. A refusal of the connection
    /// itself (code 3: too many control connections) exits 3 with its reason.
    mutating func next() throws -> ControlReply {
        let reply = try nextLine()
        if let refusal = refusal(reply) { throw refusal }
        return reply
    }

    private func refusal(_ reply: ControlReply) -> BatonExit? {
        guard case .failed(let failure) = reply, failure.code == BatonExitCode.unreachable else { return nil }
        return BatonExit(code: BatonExitCode.unreachable, message: "the daemon at \(path) refused the connection: \(failure.error)")
    }

    private mutating func nextLine() throws -> ControlReply {
        let began = monotonicNow()
        var searched = 0  // bytes of `buffer` known to hold no newline: each byte is looked at once
        while true {
            if let newline = Self.newline(in: buffer, from: searched) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let reply = try? JSONDecoder().decode(ControlReply.self, from: Data(line)) else {
                    // Not baton's protocol: no daemon of baton's was reached (an operator audit:
                    // exit 1, "the operation failed", named neither the socket nor that).
                    throw BatonExit(
                        code: BatonExitCode.unreachable, message: "the daemon at \(path) sent a reply that is not baton's control protocol")
                }
                return reply
            }
            searched = buffer.count
            // A peer that trickles bytes without a newline was waited for one read at a time,
            // without end, and kept in memory without bound: the line so far has none.
            if let timeout, monotonicNow() - began > timeout {
                throw BatonExit(code: BatonExitCode.timeout, message: "timed out waiting for the daemon at \(path)")
            }
            if buffer.count > Self.maxLineBytes {
                throw BatonExit(code: BatonExitCode.failure, message: "the daemon at \(path) sent a reply line over 64 MiB")
            }
            // Each read waits at most what is left of the line's time (a scale audit: a peer
            // sending a byte every 9.5 s held `status`, 10 s, for 19 s).
            if let timeout { setReceiveTimeout(timeout - (monotonicNow() - began)) }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw BatonExit(code: BatonExitCode.timeout, message: "timed out waiting for the daemon at \(path)")
            }
            if n <= 0 { throw BatonExit(code: BatonExitCode.unreachable, message: "the daemon at \(path) closed the connection") }
            buffer += chunk[0..<n]
        }
    }

    func close() { Glibc.close(fd) }

    /// The index of the first newline in `bytes` at or after `start` (memchr: a status reply of
    /// hundreds of workers, or a 64 MiB line, is scanned at memory speed in a debug build too).
    static func newline(in bytes: [UInt8], from start: Int) -> Int? {
        guard start < bytes.count else { return nil }
        return bytes.withUnsafeBytes { raw -> Int? in
            guard let base = raw.baseAddress, let found = memchr(base + start, 0x0A, raw.count - start) else { return nil }
            return UnsafeRawPointer(found) - base
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show workers, memory and what is in progress.")

    @OptionGroup var location: DaemonLocation

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        var client = try ControlClient(try location.endpoint(), timeout: .seconds(10))
        defer { client.close() }
        try client.send(ControlRequest(cmd: "status"))
        let status: StatusReport
        switch try client.next() {
        case .succeeded(let success):
            guard case .status(let report)? = success.payload else { throw BatonExit(code: BatonExitCode.failure, message: "status failed") }
            status = report
        case .failed(let failure):
            throw BatonExit(code: failure.code ?? BatonExitCode.failure, message: failure.error)
        case .progress:
            throw BatonExit(code: BatonExitCode.failure, message: "status failed")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            print(status.table(now: wallClockNow()))
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read the config and restart every worker, one at a time; returns when finished (systemd's ExecReload=).")

    @OptionGroup var location: DaemonLocation

    // .unconditional: "-1s" is this option's (refused) value, not an unknown flag.
    @Option(parsing: .unconditional, help: "Give up waiting after this long (e.g. 10m); exit 4. The reload goes on.")
    var timeout: String?

    func validate() throws {
        if let timeout, let problem = Units.timeoutProblem(timeout, option: "--timeout") { throw ValidationError(problem) }
    }

    func run() throws {
        let limit = timeout.flatMap(Units.parseDuration)
        var client = try ControlClient(try location.endpoint(), timeout: limit)
        defer { client.close() }
        try client.send(ControlRequest(cmd: "reload"))
        while true {
            switch try client.next() {
            case .progress(let line):
                print(line)
            case .succeeded(let success):
                print(success.message ?? "reload finished")
                return
            case .failed(let failure):
                throw BatonExit(code: failure.code ?? BatonExitCode.failure, message: failure.error)
            }
        }
    }
}
