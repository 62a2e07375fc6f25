import Glibc

/// Everything a connection needs: who this worker is, its options and the shared state.
struct Server: Sendable {
    let state: WorkerState
    let options: Options
    /// `--release`, else `BATON_RELEASE`, else the working directory's name.
    let release: String
    /// `BATON_SLOT`, else `-`.
    let slot: String
    /// `release` with control characters replaced, so it cannot break the response head.
    let releaseHeaderValue: String

    init(options: Options, state: WorkerState) {
        self.options = options
        self.state = state
        release = options.release ?? environment("BATON_RELEASE") ?? Server.workingDirectoryName()
        slot = environment("BATON_SLOT") ?? "-"
        releaseHeaderValue = String(
            String.UnicodeScalarView(release.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "_" : $0 }))
    }

    /// A response before it is framed: status line, headers and body are added by `Connection`.
    struct Response: Equatable {
        var status: Int
        var reason: String
        var body: String
    }

    /// Answers one request; `number` is this request's rank among the process's requests.
    /// Runs on the connection's thread and may block (`/slow`).
    func respond(to head: RequestHead, number: Int) -> Response {
        Memory.shared.leak(bytes: options.growPerRequest)
        switch head.path {
        case "/":
            return identity(number)
        case "/health":
            return Response(status: 200, reason: "OK", body: "ok\n")
        case "/slow":
            let milliseconds: Int
            switch head.integerParameter("ms") {
            case nil: milliseconds = 1000
            case .some(nil): return Response(status: 400, reason: "Bad Request", body: "ms must be an integer\n")
            case .some(let value?): milliseconds = value
            }
            guard milliseconds >= 0 else {
                return Response(status: 400, reason: "Bad Request", body: "ms must not be negative\n")
            }
            sleepNanos(UInt64(min(milliseconds, Options.maxSlowMilliseconds)) * 1_000_000)
            return identity(number)
        case "/env":
            return Response(status: 200, reason: "OK", body: Server.environmentLines())
        case "/fds":
            return Response(status: 200, reason: "OK", body: Server.openFileDescriptors())
        default:
            return Response(status: 404, reason: "Not Found", body: "not found\n")
        }
    }

    private func identity(_ number: Int) -> Response {
        let body = "pid=\(processID) release=\(release) slot=\(slot) requests=\(number)\n"
        return Response(status: 200, reason: "OK", body: body)
    }

    /// The process environment, one `NAME=value` per line.
    static func environmentLines() -> String {
        var lines = ""
        var entry: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let variable = entry?.pointee {
            lines += String(cString: variable) + "\n"
            entry = entry! + 1
        }
        return lines
    }

    /// One `fd -> target` line per open fd, from `/proc/self/fd` (the directory's own fd is
    /// left out).
    static func openFileDescriptors() -> String {
        guard let directory = opendir("/proc/self/fd") else { return "opendir: \(errorText(errno))\n" }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var fds: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if let fd = Int32(name), fd != own { fds.append(fd) }
        }
        var lines = ""
        for fd in fds.sorted() {
            var target = [UInt8](repeating: 0, count: 4096)
            let length = readlink("/proc/self/fd/\(fd)", &target, target.count)
            lines += "\(fd) -> \(length >= 0 ? String(decoding: target[0..<length], as: UTF8.self) : "?")\n"
        }
        return lines
    }

    private static func workingDirectoryName() -> String {
        guard let cwd = getcwd(nil, 0) else { return "-" }
        defer { free(cwd) }
        let path = String(cString: cwd)
        return path.split(separator: "/").last.map(String.init) ?? "/"
    }
}

/// The value of environment variable `name`, nil when unset or empty.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let text = String(cString: value)
    return text.isEmpty ? nil : text
}
