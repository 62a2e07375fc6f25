import BatonSystem
import Glibc

/// One-shot HTTP/1.1 requests to 127.0.0.1 (Connection: close), bounded by a 10 s timeout.
public enum HTTP {
    /// A response.
    public struct Response: Sendable {
        /// Status code.
        public var status: Int
        /// Header lines, lower-cased names.
        public var headers: [(String, String)]
        /// Body.
        public var body: String
        /// A header's value.
        public func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
    }

    /// GET `path`; nil on any connection error.
    public static func get(port: UInt16, path: String) -> Response? {
        guard let fd = connect(port: port) else { return nil }
        defer { close(fd) }
        send(fd, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return readResponse(fd)
    }

    /// A TCP connection to 127.0.0.1:`port` whose connect, reads and writes time out after
    /// 10 s; nil if it failed.
    public static func connect(port: UInt16) -> Int32? {
        let (fd, _) = connectLoopback(port: port)
        return fd >= 0 ? fd : nil
    }

    /// The same, with connect's errno when it failed (fd -1): for callers that tell a
    /// refusal from a timeout. `address` (IPv4, host byte order) defaults to 127.0.0.1;
    /// the fleet suite gives a network namespace's address, routed through its veth.
    public static func connectLoopback(port: UInt16, address: UInt32 = 0x7F00_0001) -> (fd: Int32, error: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (-1, errno) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // SO_SNDTIMEO bounds connect(2) too.
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = address.bigEndian
        let r = withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else {
            let e = errno
            close(fd)
            return (-1, e)
        }
        return (fd, 0)
    }

    /// Connects to `port` and sends `GET /slow?ms=MS` (Connection: close) to the demo worker
    /// `server`, and returns once it read the request: it took the connection (the demo worker
    /// starts a thread per connection, so its thread count grows) and the connection's server
    /// end holds no unread byte (/proc/net/tcp). A thread alone was not enough: under load a
    /// drain began before the request was read, and the demo worker closed the connection as
    /// idle (a CI run). Waited for at most 10 s; nil when it did not happen.
    public static func slowRequestInFlight(port: UInt16, server: pid_t, milliseconds: Int) -> Int32? {
        func threads() -> Int {
            let line = (ProcFS.read("/proc/\(server)/status") ?? "").split(separator: "\n").first { $0.hasPrefix("Threads:") }
            return line.flatMap { Int($0.dropFirst(8).filter { !$0.isWhitespace }) } ?? 0
        }
        let before = threads()
        guard let client = connect(port: port) else { return nil }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client, $0, &length) } }
        let clientPort = UInt16(bigEndian: local.sin_port)
        send(client, "GET /slow?ms=\(milliseconds) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        // The server end: local 127.0.0.1:port, remote 127.0.0.1:clientPort; rx_queue 0 once read.
        let hex = { (p: UInt16) in String(p, radix: 16, uppercase: true).leftPadded(to: 4) }
        let serverEnd = "0100007F:\(hex(port)) 0100007F:\(hex(clientPort)) "
        func requestRead() -> Bool {
            guard let line = (ProcFS.read("/proc/net/tcp") ?? "").split(separator: "\n").first(where: { $0.contains(serverEnd) }) else { return false }
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasSuffix(":00000000")
        }
        let deadline = monotonicNow() + .seconds(10)
        while !(threads() > before && requestRead()), monotonicNow() < deadline { usleep(5000) }
        guard threads() > before, requestRead() else {
            close(client)
            return nil
        }
        return client
    }

    /// Sends `text` whole (no SIGPIPE).
    public static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the server closes and parses the response; nil if it is not one.
    public static func readResponse(_ fd: Int32) -> Response? {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let split = text.firstRange(of: "\r\n\r\n") else { return nil }
        let headLines = text[..<split.lowerBound].split(separator: "\r\n")
        guard let first = headLines.first, first.hasPrefix("HTTP/1.") else { return nil }
        let status = Int(first.split(separator: " ").dropFirst().first ?? "") ?? 0
        let headers = headLines.dropFirst().map { line -> (String, String) in
            let name = line.prefix { $0 != ":" }.lowercased()
            return (name, String(line.drop { $0 != ":" }.dropFirst().drop { $0 == " " }))
        }
        return Response(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (for tools that
    /// cannot bind port 0 themselves; callers retry on EADDRINUSE).
    public static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = 0
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp -> Int32 in
                _ = bind(fd, sp, len)
                return getsockname(fd, sp, &len)
            }
        }
        return UInt16(bigEndian: sa.sin_port)
    }
}

extension String {
    /// Zeros put in front up to `width` characters.
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
