import CSystemd
import Glibc

/// The listening sockets the worker serves on.
struct Listeners {
    /// Listening stream sockets, all non-blocking.
    var fds: [Int32]
    /// How many fds socket activation passed (`sd_listen_fds`).
    var inherited: Int
    /// `matched`, `unset` or `mismatch(PID)`: what `LISTEN_PID` said about this process.
    var listenPID: String

    /// Takes the sockets passed by socket activation, else binds `--listen`, else exits 2.
    static func open(options: Options) -> Listeners {
        let pidText = getenv("LISTEN_PID").map { String(cString: $0) }
        let listenPID: String
        switch pidText {
        case nil: listenPID = "unset"
        case let text? where Int32(text) == processID: listenPID = "matched"
        case let text?: listenPID = "mismatch(\(text))"
        }

        // Unsetting nothing: /env shows what the worker was given, and the fds stay usable.
        let count = sd_listen_fds(0)
        if count < 0 {
            fail("bad socket activation variables: \(errorText(-count))", status: 2)
        }
        if count > 0 {
            var fds: [Int32] = []
            for fd in SD_LISTEN_FDS_START..<(SD_LISTEN_FDS_START + count) {
                guard sd_is_socket(fd, AF_UNSPEC, Int32(SOCK_STREAM.rawValue), 1) > 0 else {
                    log("fd \(fd) is not a listening stream socket: ignored")
                    continue
                }
                setNonBlocking(fd)
                fds.append(fd)
            }
            if fds.isEmpty {
                fail("no listening stream socket among the \(count) inherited fds", status: 2)
            }
            if options.listen != nil { log("--listen ignored: sockets were passed by socket activation") }
            return Listeners(fds: fds, inherited: Int(count), listenPID: listenPID)
        }

        guard let address = options.listen else {
            if getenv("LISTEN_FDS") != nil && listenPID != "matched" {
                // libsystemd ignores fds meant for another process (e.g. a parent that did not
                // set LISTEN_PID for its child).
                let pid = pidText ?? "unset"
                fail("no listening socket (LISTEN_PID=\(pid) is not this pid \(processID), and no --listen)", status: 2)
            }
            fail("no listening socket (LISTEN_FDS unset and no --listen)", status: 2)
        }
        return Listeners(fds: [bind(address)], inherited: 0, listenPID: listenPID)
    }

    /// Binds and listens on `HOST:PORT` (`[V6]:PORT` for IPv6 literals); exits on failure.
    private static func bind(_ address: String) -> Int32 {
        guard let (host, port) = splitHostPort(address) else {
            fail("--listen '\(address)': expected HOST:PORT", status: 2)
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host.isEmpty ? nil : host, port, &hints, &list)
        guard status == 0, let first = list else {
            fail("--listen '\(address)': \(String(cString: gai_strerror(status)))", status: 2)
        }
        defer { freeaddrinfo(list) }

        let info = first.pointee
        let fd = socket(info.ai_family, info.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.ai_protocol)
        guard fd >= 0 else { fail("--listen '\(address)': socket: \(errorText(errno))", status: 1) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Glibc.bind(fd, info.ai_addr, info.ai_addrlen) == 0 else {
            fail("--listen '\(address)': bind: \(errorText(errno))", status: 1)
        }
        guard listen(fd, SOMAXCONN) == 0 else {
            fail("--listen '\(address)': listen: \(errorText(errno))", status: 1)
        }
        setNonBlocking(fd)
        return fd
    }

    /// Splits `HOST:PORT` or `[V6]:PORT`; the port must be numeric.
    static func splitHostPort(_ address: String) -> (host: String, port: String)? {
        var host: Substring
        var port: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]") else { return nil }
            host = address[address.index(after: address.startIndex)..<close]
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            port = rest.dropFirst()
        } else {
            guard let colon = address.lastIndex(of: ":") else { return nil }
            host = address[..<colon]
            port = address[address.index(after: colon)...]
            if host.contains(":") { return nil }  // a bare IPv6 literal needs brackets
        }
        guard let number = Int(port), (0...65535).contains(number) else { return nil }
        return (String(host), String(port))
    }

    /// Several workers accept on the same socket: a blocking `accept` would hang every worker
    /// that loses the race for a connection.
    private static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            fail("fd \(fd): cannot set O_NONBLOCK: \(errorText(errno))", status: 1)
        }
    }
}
