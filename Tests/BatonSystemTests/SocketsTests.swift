import BatonCore
import BatonSystem
import BatonTestSupport
import BatonTestTraits
import Glibc
import Synchronization
import Testing

/// True when this host can bind [::1] (containers often have no IPv6 loopback).
private func ipv6LoopbackAvailable() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var sa = sockaddr_in6()
    sa.sin6_family = sa_family_t(AF_INET6)
    sa.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &sa) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0 }
    }
}

private func port(of listener: Listener) throws -> UInt16 {
    let text = try #require(Sockets.localAddress(listener.fd))
    return try #require(UInt16(text.split(separator: ":").last ?? ""))
}

private func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return st.st_mode
}

/// A unix stream client connected to `path`, or -1.
private func connectUnix(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if Sockets.connectUnix(fd, path) != 0 {
        close(fd)
        return -1
    }
    return fd
}

@Suite("Sockets", .serialized, .ownThread)
struct SocketsTests {
    @Test func tcpLoopbackGetsAPortAndAccepts() throws {
        let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(listener) {} }  // dropping it closes it
        let port = try port(of: listener)
        #expect(port != 0)
        #expect(listener.address == "127.0.0.1:\(port)")
        #expect(Sockets.localAddress(listener.fd) == listener.address)
        #expect(listener.name == "bound-127.0.0.1_0")
        #expect(Sockets.isListeningStream(listener.fd))
        #expect(fcntl(listener.fd, F_GETFD) & FD_CLOEXEC != 0)
        let client = HTTP.connectLoopback(port: port).fd
        try #require(client >= 0)
        defer { close(client) }
        let accepted = Sockets.acceptNonBlocking(listener.fd)
        #expect(accepted >= 0)
        if accepted >= 0 {
            #expect(fcntl(accepted, F_GETFL) & O_NONBLOCK != 0)
            #expect(fcntl(accepted, F_GETFD) & FD_CLOEXEC != 0)
            #expect(!Sockets.isListeningStream(accepted))  // connected, not listening
            close(accepted)
        }
    }

    @Test(.enabled(if: ipv6LoopbackAvailable(), "IPv6 loopback [::1] is not available on this host"))
    func tcpIPv6Loopback() throws {
        let listener = try Sockets.bind(.tcp(host: "::1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(listener) {} }  // dropping it closes it
        let port = try port(of: listener)
        #expect(port != 0)
        #expect(listener.address == "[::1]:\(port)")
        #expect(listener.name == "bound-[__1]_0")
        #expect(Sockets.isListeningStream(listener.fd))
    }

    @Test func tcpPortInUseAndBadHost() throws {
        let first = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(first) {} }  // dropping it closes it
        let port = try port(of: first)
        #expect(throws: SystemError("bind", errno: EADDRINUSE, subject: "127.0.0.1:\(port)")) {
            _ = try Sockets.bind(.tcp(host: "127.0.0.1", port: port), mode: 0o660, backlog: 16)
        }
        #expect(throws: SystemError("inet_pton", errno: EINVAL, subject: "localhost")) {
            _ = try Sockets.bind(.tcp(host: "localhost", port: 0), mode: 0o660, backlog: 16)
        }
    }

    /// What ``Supervisor/checkAcceptQueues()`` reads: the connections no process accepted yet.
    @Test func theAcceptQueueOfATCPListenerIsCounted() throws {
        let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(listener) {} }  // dropping it closes it
        #expect(Sockets.acceptQueueLength(listener.fd) == 0)
        let clients = (0..<2).map { _ in (try? port(of: listener)).map { HTTP.connectLoopback(port: $0).fd } ?? -1 }
        defer { clients.forEach { close($0) } }
        try #require(clients.allSatisfy { $0 >= 0 })
        // The handshake ends in the kernel; the connection is queued by the time connect returns.
        #expect(Sockets.acceptQueueLength(listener.fd) == 2)
        let accepted = Sockets.acceptNonBlocking(listener.fd)
        defer { close(accepted) }
        #expect(Sockets.acceptQueueLength(listener.fd) == 1)
        #expect(Sockets.acceptQueueLength(accepted) == nil, "connected, not listening")
        try withTemporaryDirectory("queue") { dir in
            let unix = try Sockets.bind(.unix(path: dir + "/q.sock"), mode: 0o600, backlog: 16)
            defer { withExtendedLifetime(unix) {} }
            #expect(Sockets.acceptQueueLength(unix.fd) == nil, "not TCP")
        }
    }

    @Test(arguments: [0o660 as UInt32, 0o600, 0o666])
    func unixSocketGetsItsMode(mode: UInt32) throws {
        try withTemporaryDirectory("sock") { dir in
            let path = dir + "/http.sock"
            let listener = try Sockets.bind(.unix(path: path), mode: mode, backlog: 16)
            defer { withExtendedLifetime(listener) {} }  // dropping it closes it
            let st = try #require(fileMode(path))
            #expect(st & S_IFMT == S_IFSOCK)
            #expect(UInt32(st & 0o7777) == mode)
            #expect(listener.address == "unix:\(path)")
            #expect(Sockets.localAddress(listener.fd) == "unix:\(path)")
            #expect(listener.name == Sockets.fdName(for: .unix(path: path)))
            #expect(!listener.name.contains(":") && !listener.name.contains("/"))
            #expect(Sockets.isListeningStream(listener.fd))
            let client = connectUnix(path)
            #expect(client >= 0)
            close(client)
        }
    }

    @Test func isListeningStreamIsFalseForOtherDescriptors() throws {
        let pipe = try makePipe()
        defer {
            close(pipe.read)
            close(pipe.write)
        }
        #expect(!Sockets.isListeningStream(pipe.read))
        #expect(!Sockets.isListeningStream(pipe.write))
        #expect(!Sockets.isListeningStream(-1))
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(udp) }
        #expect(!Sockets.isListeningStream(udp))
        let unlistened = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(unlistened) }
        #expect(!Sockets.isListeningStream(unlistened))
        let file = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)
        defer { close(file) }
        #expect(!Sockets.isListeningStream(file))
    }

    @Test func staleSocketFileIsReplaced() throws {
        try withTemporaryDirectory("stale") { dir in
            let path = dir + "/app.sock"
            // Bound by a process that then exits: the file stays behind, nobody listens. Not
            // bound and closed here: a child another test spawns at that instant keeps a copy
            // of the socket until its execve, and the "stale" socket answered (seen once, in
            // a run under CPU hogs).
            let stale = try TestProcess.run(
                ["/usr/bin/python3", "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)", path],
                timeout: .seconds(30))
            try #require(stale.code == 0, "\(stale.stderr)")
            #expect(fileMode(path).map { $0 & S_IFMT } == S_IFSOCK)
            #expect(connectUnix(path) == -1)
            let fresh = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 16)
            defer { withExtendedLifetime(fresh) {} }  // dropping it closes it
            #expect(fileMode(path).map { UInt32($0 & 0o7777) } == 0o600)
            let client = connectUnix(path)
            #expect(client >= 0)
            close(client)
        }
    }

    @Test func liveListenerIsNotStolen() throws {
        try withTemporaryDirectory("live") { dir in
            let path = dir + "/app.sock"
            let live = try Sockets.bind(.unix(path: path), mode: 0o660, backlog: 16)
            defer { withExtendedLifetime(live) {} }  // dropping it closes it
            #expect(throws: SystemError("bind", errno: EADDRINUSE, subject: path)) {
                _ = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 16)
            }
            // The live one keeps its file, its mode and its clients.
            #expect(fileMode(path).map { UInt32($0 & 0o7777) } == 0o660)
            let client = connectUnix(path)
            #expect(client >= 0)
            close(client)
            #expect(Sockets.isListeningStream(live.fd))
        }
    }

    @Test func regularFileAtThePathIsNeverRemoved() throws {
        try withTemporaryDirectory("file") { dir in
            let path = dir + "/app.sock"
            TestPaths.write(path, "precious\n")
            #expect(throws: SystemError("bind", errno: EADDRINUSE, subject: path)) {
                _ = try Sockets.bind(.unix(path: path), mode: 0o660, backlog: 16)
            }
            #expect(ProcFS.read(path) == "precious\n")
        }
    }

    @Test func unixPathTooLong() {
        let path = "/tmp/" + String(repeating: "x", count: 120)
        #expect(throws: SystemError("bind", errno: ENAMETOOLONG, subject: path)) {
            _ = try Sockets.bind(.unix(path: path), mode: 0o660, backlog: 16)
        }
    }

    @Test func datagramSocketWithGroupAndMode() throws {
        try withTemporaryDirectory("dgram") { dir in
            let path = dir + "/notify.sock"
            let fd = try Sockets.bindUnix(path: path, type: Int32(SOCK_DGRAM.rawValue), mode: 0o620, group: getegid())
            defer { close(fd) }
            var st = stat()
            #expect(lstat(path, &st) == 0)
            #expect(st.st_mode & 0o7777 == 0o620)
            #expect(st.st_gid == getegid())
            #expect(!Sockets.isListeningStream(fd))
        }
    }

    @Test func fdNames() {
        #expect(Sockets.fdName(for: .tcp(host: "127.0.0.1", port: 8080)) == "bound-127.0.0.1_8080")
        #expect(Sockets.fdName(for: .tcp(host: "::1", port: 80)) == "bound-[__1]_80")
        #expect(Sockets.fdName(for: .unix(path: "/run/shop/http.sock")) == "bound-unix__run_shop_http.sock")
    }

    /// bindUnix restricted the socket file by setting the umask around bind: the umask is
    /// process-wide, so a directory or file another thread created meanwhile (or a child it
    /// spawned) lost its group/other and execute bits (seen as a 0600 mkdtemp directory and
    /// "not executable" test binaries in CI). A thread here watches this process's umask
    /// while sockets are bound.
    @Test func bindingAUnixSocketLeavesTheUmaskAlone() throws {
        let dir = TestPaths.temporaryDirectory("umask")
        defer { TestPaths.remove(dir) }
        let umaskLine: @Sendable () -> String? = { ProcFS.read("/proc/self/status")?.split(separator: "\n").first { $0.hasPrefix("Umask:") }.map(String.init) }
        let initial = umaskLine()
        let done = Mutex(false)
        let seen = Mutex(Set<String>())
        let watcher = Thread {
            while !done.withLock({ $0 }) { if let line = umaskLine() { seen.withLock { _ = $0.insert(line) } } }
        }
        for i in 0..<400 {
            let fd = try Sockets.bindUnix(path: dir + "/s\(i).sock", type: Int32(SOCK_DGRAM.rawValue), mode: 0o600)
            close(fd)
        }
        done.withLock { $0 = true }
        watcher.join()
        #expect(seen.withLock { $0 } == Set([initial].compactMap { $0 }), "the umask changed while sockets were bound")
        var st = stat()
        #expect(stat(dir + "/s0.sock", &st) == 0 && st.st_mode & 0o777 == 0o600)
    }
}

extension SocketsTests {
    /// The file a unix socket was bound to, from the kernel: the one at its path until that is
    /// replaced by another socket's; none for a TCP socket.
    @Test("a unix socket's bound file is known, and told from another socket's at its path")
    func boundFileOfAUnixSocket() throws {
        let directory = TestPaths.temporaryDirectory("bound-file")
        defer { TestPaths.remove(directory) }
        let path = directory + "/a.sock"
        let first = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 4)
        let bound = try #require(Sockets.boundFile(of: first.fd))
        #expect(Sockets.isBoundFile(try #require(FileIdentity(path: path)), of: bound))
        #expect(unlink(path) == 0)
        let second = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 4)
        #expect(!Sockets.isBoundFile(try #require(FileIdentity(path: path)), of: bound))
        #expect(Sockets.boundFile(of: second.fd).map { Sockets.isBoundFile(FileIdentity(path: path)!, of: $0) } == true)
        let tcp = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 4)
        #expect(Sockets.boundFile(of: tcp.fd) == nil)
    }
}
