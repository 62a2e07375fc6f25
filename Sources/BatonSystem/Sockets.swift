import BatonCore
import CBatonLinux
import CSystemd
import Glibc

/// A listening socket baton hands to every worker, owned: its descriptor is closed once, when
/// the last holder lets it go (the supervisor at shutdown; a socket left out of the config, or
/// received and not used, when its record is dropped).
public final class Listener: Sendable {
    /// The descriptor, owned.
    private let socket: OwnedDescriptor
    /// The descriptor in baton (close-on-exec; the spawn path places it at 3..).
    public var fd: Int32 { socket.rawValue }
    /// The name passed in LISTEN_FDNAMES.
    public let name: String
    /// Where it listens, for logs and status ("127.0.0.1:8080", "unix:/run/x").
    public let address: String

    /// A listener that owns `fd` from now on.
    public convenience init(fd: Int32, name: String, address: String) {
        self.init(socket: OwnedDescriptor(fd), name: name, address: address)
    }

    /// A listener that owns `socket` from now on.
    public init(socket: consuming OwnedDescriptor, name: String, address: String) {
        self.socket = socket
        self.name = name
        self.address = address
    }
}

/// Opening, receiving and inspecting listening sockets.
public enum Sockets {
    /// Sockets passed by systemd socket activation (LISTEN_FDS/LISTEN_PID/
    /// LISTEN_FDNAMES), or an empty array when baton was not activated.
    /// Each must be a listening stream socket.
    public static func activated() throws(ActivationError) -> [Listener] {
        var namesPointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        // unset_environment = 0: baton's own environment stays as systemd set
        // it (worker environments are built explicitly, without LISTEN_*).
        let n = sd_listen_fds_with_names(0, &namesPointer)
        if n < 0 {
            // EINVAL: LISTEN_FDNAMES names more or fewer descriptors than LISTEN_FDS passes.
            throw ActivationError(
                -n == EINVAL
                    ? "LISTEN_FDS and LISTEN_FDNAMES do not agree (LISTEN_FDS=\(getenv("LISTEN_FDS").map { String(cString: $0) } ?? "-"), LISTEN_FDNAMES=\(getenv("LISTEN_FDNAMES").map { String(cString: $0) } ?? ""))"
                    : "\(SystemError("sd_listen_fds_with_names", errno: -n))")
        }
        defer {
            if let names = namesPointer {
                for i in 0..<Int(n) { free(names[i]) }
                free(names)
            }
        }
        var result: [Listener] = []
        for i in 0..<Int(n) {
            let fd = SD_LISTEN_FDS_START + Int32(i)
            var name = "fd\(fd)"
            if let names = namesPointer, let c = names[i] { name = String(cString: c) }
            guard isListeningStream(fd) else {
                throw ActivationError("fd \(fd) (\(name)) is \(describe(fd)), not a listening stream socket: baton serves ListenStream= sockets only")
            }
            do { try setCloseOnExec(fd) } catch { throw ActivationError("fd \(fd) (\(name)): \(error)") }
            result.append(Listener(fd: fd, name: name, address: localAddress(fd) ?? name))
        }
        return result
    }

    /// What a passed descriptor that is no listening stream socket is instead.
    static func describe(_ fd: Int32) -> String {
        var type: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 else { return "not a socket" }
        switch type {
        case Int32(SOCK_DGRAM.rawValue): return "a datagram socket"
        case Int32(SOCK_SEQPACKET.rawValue): return "a sequential packet socket"
        case Int32(SOCK_STREAM.rawValue): return "a stream socket that does not listen"
        default: return "a socket of type \(type)"
        }
    }

    /// True when `fd` is a stream socket in the listening state.
    public static func isListeningStream(_ fd: Int32) -> Bool {
        var value: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) == 0, value == 1 else { return false }
        var type: Int32 = 0
        len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 else { return false }
        return type == Int32(SOCK_STREAM.rawValue)
    }

    /// Accepts one connection, non-blocking and close-on-exec; -1 when none is pending.
    public static func acceptNonBlocking(_ fd: Int32) -> Int32 { CBatonLinux_accept_nonblocking(fd) }

    /// The prefix of names baton gives sockets it bound itself; activated
    /// fds with it come back from baton's own FD store.
    public static let boundPrefix = "bound-"

    /// The LISTEN_FDNAMES/FDNAME name baton gives a socket it bound itself
    /// (names may not contain ':').
    public static func fdName(for address: ListenAddress) -> String {
        let raw = address.description.map { $0 == ":" || $0 == "/" ? "_" : $0 }
        return String((boundPrefix + String(raw)).prefix(255))
    }

    /// Binds and listens on one address. Unix sockets get `mode`; a stale
    /// socket file at the path is replaced.
    public static func bind(_ address: ListenAddress, mode: UInt32, backlog: Int32, group: gid_t? = nil) throws(SystemError) -> Listener {
        switch address {
        case .tcp(let host, let port):
            let fd = try bindTCP(host: host, port: port, backlog: backlog, subject: address.description)
            let actual = localAddress(fd) ?? address.description
            return Listener(fd: fd, name: fdName(for: address), address: actual)
        case .unix(let path):
            let fd = try bindUnix(path: path, type: Int32(SOCK_STREAM.rawValue), mode: mode, group: group)
            do {
                try syscall("listen", subject: path) { listen(fd, backlog) }
            } catch {
                close(fd)
                throw error
            }
            return Listener(fd: fd, name: fdName(for: address), address: address.description)
        }
    }

    private static func bindTCP(host: String, port: UInt16, backlog: Int32, subject: String) throws(SystemError) -> Int32 {
        var v4 = in_addr()
        var v6 = in6_addr()
        let isV4 = inet_pton(AF_INET, host, &v4) == 1
        guard isV4 || inet_pton(AF_INET6, host, &v6) == 1 else {
            throw SystemError("inet_pton", errno: EINVAL, subject: host)
        }
        let family = isV4 ? AF_INET : AF_INET6
        let fd = try syscall("socket", subject: subject) {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do {
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if isV4 {
                var sa = sockaddr_in()
                sa.sin_family = sa_family_t(AF_INET)
                sa.sin_port = port.bigEndian
                sa.sin_addr = v4
                try withUnsafePointer(to: &sa) { p throws(SystemError) in
                    try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp throws(SystemError) in
                        _ = try syscall("bind", subject: subject) { Glibc.bind(fd, sp, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
            } else {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
                var sa = sockaddr_in6()
                sa.sin6_family = sa_family_t(AF_INET6)
                sa.sin6_port = port.bigEndian
                sa.sin6_addr = v6
                try withUnsafePointer(to: &sa) { p throws(SystemError) in
                    try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp throws(SystemError) in
                        _ = try syscall("bind", subject: subject) { Glibc.bind(fd, sp, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
                    }
                }
            }
            try syscall("listen", subject: subject) { listen(fd, backlog) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Creates a unix socket of `type` bound at `path` with `mode`; a stale
    /// socket file there is removed first (a live one is not: bind fails).
    public static func bindUnix(path: String, type: Int32, mode: UInt32, group: gid_t? = nil) throws(SystemError) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw SystemError("bind", errno: ENAMETOOLONG, subject: path) }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        removeStaleSocket(path)
        let fd = try syscall("socket", subject: path) { socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            // bind creates the file with the socket inode's mode minus the umask: restrict the
            // inode first (never the umask: it is process-wide, and other threads create files
            // and children meanwhile), then chmod to `mode`.
            try syscall("fchmod", subject: path) { fchmod(fd, 0o600) }
            try withUnsafePointer(to: &addr) { p throws(SystemError) in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp throws(SystemError) in
                    _ = try syscall("bind", subject: path) { Glibc.bind(fd, sp, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
            if let group { try syscall("chown", subject: path) { chown(path, UInt32.max, group) } }
            try syscall("chmod", subject: path) { chmod(path, mode_t(mode)) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    private static func removeStaleSocket(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return }
        // Connect-probe it: a live socket (another baton) is left alone.
        if !unixSocketAnswers(path) { unlink(path) }
    }

    /// Whether a process accepts connections on the unix stream socket at `path` (a connect
    /// probe, closed at once); false for no file, a file that is not a socket, or a stale one.
    /// Non-blocking: a live socket whose backlog is full (EAGAIN) answers too, without a wait.
    public static func unixSocketAnswers(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return connectUnix(probe, path) == 0 || errno == EAGAIN
    }

    /// How far `sendAvailable` got.
    public enum SendProgress: Sendable {
        /// Everything was sent.
        case drained
        /// The socket buffer is full: the rest stays queued until the socket is writable.
        case wouldBlock
        /// The peer is gone (or another send error): close the socket.
        case failed
    }

    /// Sends as much of `output` as a non-blocking socket takes now (no SIGPIPE)
    /// and removes what was sent from it.
    public static func sendAvailable(_ fd: Int32, _ output: inout [UInt8]) -> SendProgress {
        while !output.isEmpty {
            let n = output.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN ? .wouldBlock : .failed
            }
            output.removeFirst(n)
        }
        return .drained
    }

    /// connect(2) to a unix stream path; returns 0 or -1 with errno.
    public static func connectUnix(_ fd: Int32, _ path: String) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            Glibc.errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                connect(fd, sp, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    /// The connections waiting in the accept queue of a listening TCP socket (TCP_INFO's
    /// `tcpi_unacked`, which is that queue's length for a socket in LISTEN); nil for another
    /// kind of socket.
    public static func acceptQueueLength(_ fd: Int32) -> UInt32? {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0, info.tcpi_state == 10 else { return nil }  // TCP_LISTEN
        return info.tcpi_unacked
    }

    /// Whether a stream socket is listening (SO_ACCEPTCONN): false once a process holding it
    /// called shutdown(2) on it, which disconnects it for every holder and frees its address;
    /// nil when it cannot be read.
    public static func isListening(_ fd: Int32) -> Bool? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 else { return nil }
        return value != 0
    }

    /// "127.0.0.1:8080", "[::1]:8080" or "unix:/path" for a bound socket.
    public static func localAddress(_ fd: Int32) -> String? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                    inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
                    return "\(String(cString: buf)):\(UInt16(bigEndian: sin.pointee.sin_port))"
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var a = sin.pointee.sin6_addr
                    var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                    inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
                    return "[\(String(cString: buf))]:\(UInt16(bigEndian: sin.pointee.sin6_port))"
                }
            }
        case AF_UNIX:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { sun in
                    withUnsafeBytes(of: sun.pointee.sun_path) { raw in
                        let bytes = raw.prefix { $0 != 0 }
                        return "unix:" + String(decoding: bytes, as: UTF8.self)
                    }
                }
            }
        default:
            return nil
        }
    }
}

/// What systemd passed cannot be served: one line for the operator.
public struct ActivationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = "socket activation: " + description }
}
