import BatonCore
import BatonSystem
import Glibc
import Logging

/// The control socket: a unix stream socket (mode 0660, group from config)
/// speaking line-delimited JSON. Peers are checked with SO_PEERCRED and
/// SO_PEERGROUPS; bad input gets an error reply and never hurts the daemon.
/// Every slot comes back: a client that sends no whole request within
/// `[control] idle_timeout`, or takes none of a pending reply for that long,
/// is disconnected; one over `maxConnections` is told so and closed.
final class ControlServer {
    let path: String
    /// The folders created for the socket, outermost first (none when they existed).
    private var createdDirectories: [String] = []
    /// The listening socket, owned: closed by ``close()``, or when the server goes.
    private var listening: OwnedDescriptor?
    /// Its number; -1 once closed.
    var fd: Int32 { listening?.rawValue ?? -1 }
    unowned let loop: EventLoop
    unowned let supervisor: any ControlRequestHandler
    let logger: Logger
    /// Group allowed every verb (besides root and baton's own uid).
    let groupID: gid_t?
    /// Group allowed read-only verbs.
    let readGroupID: gid_t?
    /// Open connections by fd.
    var connections: [Int32: ControlConnection] = [:]
    /// Clients at once; more are refused.
    static let maxConnections = 64
    /// `[control] idle_timeout`.
    let idleTimeout: Duration
    /// Accepts the clients, pausing while descriptors run out.
    private let acceptPause: AcceptPause

    /// Binds the socket (or, after an in-place upgrade, adopts the one the
    /// previous image listened on: it is never re-bound). `lookUpGroup` finds
    /// `[control] group` and `read_group` (the supervisor's port).
    init(
        adopting existing: Int32? = nil, config: BatonConfig, loop: EventLoop, logger: Logger, supervisor: any ControlRequestHandler,
        lookUpGroup: (String) throws(SpawnError) -> gid_t
    ) throws {
        path = config.control.socket
        self.loop = loop
        self.logger = logger
        self.supervisor = supervisor
        idleTimeout = config.control.idleTimeout
        groupID = try config.control.group.map { name throws(SpawnError) in try lookUpGroup(name) }
        readGroupID = try config.control.readGroup.map { name throws(SpawnError) in try lookUpGroup(name) }
        let socketFD: Int32
        if let existing {
            listening = OwnedDescriptor(existing)
            socketFD = existing
        } else {
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if !directory.isEmpty { createdDirectories = try Filesystem.makeDirectory(directory, mode: 0o755) }
            let socket = try Sockets.bindUnix(path: path, type: Int32(SOCK_STREAM.rawValue), mode: 0o660, group: groupID)
            // Owned at once: a failure below closes it.
            listening = OwnedDescriptor(socket)
            try setNonBlocking(socket)
            try BatonSystem.syscall("listen", subject: path) { listen(socket, 64) }
            socketFD = socket
        }
        acceptPause = AcceptPause(loop: loop, fd: socketFD) { [logger] in logger.error("control socket: \($0)") }
        try loop.register(fd: fd, events: .readable) { [unowned self] _ in self.acceptAll() }
    }

    /// Takes over a client connection the previous image handed across the
    /// execve (the `baton upgrade` client waiting for its result).
    func adoptClient(_ client: Int32) -> ControlConnection? {
        let connection = ControlConnection(fd: client, server: self)
        connection.markRequestReceived()
        guard
            (try? loop.register(
                fd: client, events: .readable,
                handler: { [unowned self, unowned connection] events in
                    self.connectionEvent(connection, events)
                })) != nil
        else {
            return nil  // the connection owned the socket: dropping it closes it
        }
        connections[client] = connection
        return connection
    }

    /// Stops accepting (shutdown); open connections are finished by their owners.
    func close() {
        acceptPause.cancel()
        loop.unregister(fd: fd)
        listening = nil  // closes it
        unlink(path)
        // Only the folders this server made for its socket, innermost first, and only if empty
        // (an operator audit found /run/baton/NAME, made for the default socket, left behind).
        for directory in createdDirectories.reversed() { rmdir(directory) }
        createdDirectories = []
    }

    private func acceptAll() {
        while let client = acceptPause.next() {
            guard connections.count < Self.maxConnections else {
                // Owned: closed once the refusal is sent, when this block is left.
                let refused = OwnedDescriptor(client)
                // The reply fits an empty socket buffer: one non-blocking send. It
                // stays readable after the close even if the client's request
                // never arrives (its send then fails with EPIPE; the CLI reads on).
                var reply = ControlProtocol.encodeLine(
                    ControlReply.failure(
                        "too many control connections (\(Self.maxConnections) open); try again later",
                        code: 3))  // the CLI's exit code for "could not reach the daemon"
                _ = Sockets.sendAvailable(refused.rawValue, &reply)
                continue
            }
            // Owns the socket from now on: a connection dropped below closes it.
            let connection = ControlConnection(fd: client, server: self)
            guard let peer = CBatonLinuxShim.peerCredentials(client) else { continue }
            connection.peer = peer
            connection.groups = CBatonLinuxShim.peerGroups(client)
            do {
                try loop.register(fd: client, events: .readable) { [unowned self, unowned connection] events in
                    self.connectionEvent(connection, events)
                }
                connections[client] = connection
                connection.armTimeout(.request)
            } catch {
                continue  // dropping the connection closes its socket
            }
        }
    }

    /// Why the peer may not run `request` (`ControlPolicy`), or nil when it may.
    func refusal(_ connection: ControlConnection, _ request: ControlRequest) -> String? {
        guard let peer = connection.peer else { return "permission denied: no peer credentials" }
        let policy = ControlPolicy(
            daemonUID: geteuid(), controlGroup: groupID, readGroup: readGroupID, workerUID: supervisor.workerUID ?? geteuid())
        return policy.refusal(request, from: .init(uid: peer.uid, groups: [peer.gid] + connection.groups))
    }

    private func connectionEvent(_ connection: ControlConnection, _ events: EventLoop.Events) {
        if events.contains(.writable) { connection.flush() }
        if !events.isDisjoint(with: [.readable, .hangup, .error]) {
            connection.readAvailable(peerGone: !events.isDisjoint(with: [.hangup, .error]))
        }
    }

    fileprivate func handle(_ connection: ControlConnection, line: [UInt8]) {
        let request: ControlRequest
        switch ControlProtocol.decodeRequest(line) {
        case .failure(let error):
            logger.warning("control: rejected request: \(error.message)", metadata: ["peer_uid": .stringConvertible(connection.peer?.uid ?? 0)])
            // A request that is not one baton can take is bad input, as a usage error is: exit 2.
            connection.finish(.failure(error.message, code: 2))
            return
        case .success(let r):
            request = r
        }
        guard let command = request.command else {
            // decodeRequest refuses these already.
            connection.finish(.failure("unknown command \"\(ControlProtocol.printable(request.cmd))\""))
            return
        }
        if let refusal = refusal(connection, request) {
            logger.warning("control: \(request.cmd) refused for uid \(connection.peer?.uid ?? 0): \(refusal)")
            connection.finish(.failure(refusal))
            return
        }
        if command.isMutating {
            logger.info(
                "control: \(request.cmd) requested",
                metadata: ["peer_uid": .stringConvertible(connection.peer?.uid ?? 0), "peer_pid": .stringConvertible(connection.peer?.pid ?? 0)])
        }
        switch command {
        case .ping:
            connection.finish(.success("pong"))
        case .status:
            supervisor.requestStatus { connection.finish(.success(payload: .status($0))) }
        case .reload:
            supervisor.requestReload(waiter: connection, uid: connection.peer?.uid)
        case .deploy, .rollback:
            supervisor.requestDeploy(
                kind: command == .deploy ? .deploy : .rollback, options: request.deploy ?? DeployOptions(),
                waiter: connection, uid: connection.peer?.uid ?? 0)
        case .attach:
            supervisor.attach(connection, release: request.deploy?.release)
        case .preflight:
            supervisor.requestPreflight(request.preflight ?? PreflightOptions(), waiter: connection, uid: connection.peer?.uid ?? 0)
        case .upgrade:
            // The check's time limit travels as the request's deploy timeout (`upgrade --timeout`).
            let checkTimeout = (request.deploy?.timeout).flatMap(Units.parseDuration) ?? Supervisor.upgradeCheckTimeout
            supervisor.requestUpgrade(binary: request.binary, checkTimeout: checkTimeout, waiter: connection)
        case .history:
            connection.finish(.success(payload: .history(supervisor.history)))
        case .releases, .pruneReleases:
            supervisor.answerReleases(connection, prune: command == .pruneReleases)
        }
    }

    fileprivate func closed(_ connection: ControlConnection) {
        loop.unregister(fd: connection.fd)
        connections[connection.fd] = nil
        connection.socket = nil  // closes it
    }
}

/// One client of the control socket: reads one request line, then receives
/// progress lines and one final reply. A client that goes away mid-command
/// does not cancel it; one that half-closes after its request still gets
/// the whole reply.
final class ControlConnection {
    /// The client's socket, owned until the server lets the connection go (`closed`).
    fileprivate var socket: OwnedDescriptor?
    /// Its number; -1 once closed.
    var fd: Int32 { socket?.rawValue ?? -1 }
    unowned let server: ControlServer
    var peer: (pid: pid_t, uid: uid_t, gid: gid_t)?
    var groups: [gid_t] = []
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var gotRequest = false
    private var closeAfterFlush = false
    /// The peer shut its writing half (EOF read): stop watching for input.
    private var peerShutWrite = false
    /// The idle or write timeout, when one runs.
    private var timer: EventLoop.Token?
    private(set) var isClosed = false

    /// What a running timeout waits for.
    enum Timeout {
        /// A whole request line, from the connect on.
        case request
        /// Any progress on a pending reply (the peer stopped reading).
        case reply
    }

    /// A connection that owns `fd` from now on.
    init(fd: Int32, server: ControlServer) {
        socket = OwnedDescriptor(fd)
        self.server = server
    }

    /// For an adopted connection whose request the previous image read.
    func markRequestReceived() { gotRequest = true }

    /// (Re)starts the timeout: at `idle_timeout` from now the connection closes,
    /// after a one-line reason when it was waiting for the request.
    func armTimeout(_ kind: Timeout) {
        if let timer { server.loop.cancel(timer) }
        timer = server.loop.schedule(after: server.idleTimeout) { [weak self] in
            guard let self, !self.isClosed else { return }
            self.timer = nil
            if kind == .request {
                var reason = ControlProtocol.encodeLine(
                    ControlReply.failure("no request within \(Units.formatDuration(self.server.idleTimeout)) ([control] idle_timeout)"))
                _ = Sockets.sendAvailable(self.fd, &reason)
            }
            self.server.logger.warning(
                kind == .request ? "control: client sent no request in time; closed" : "control: client stopped reading its reply; closed",
                metadata: ["peer_uid": .stringConvertible(self.peer?.uid ?? 0), "peer_pid": .stringConvertible(self.peer?.pid ?? 0)])
            self.close()
        }
    }

    private func cancelTimeout() {
        if let timer { server.loop.cancel(timer) }
        timer = nil
    }

    /// Reads what the peer sent; `peerGone` when epoll reported a hangup or an
    /// error (the peer closed both halves: nobody reads a reply any more).
    func readAvailable(peerGone: Bool = false) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isClosed {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                if errno != EAGAIN || peerGone { close() }
                return
            }
            if n == 0 {
                // A request whose end is the half-close, without a newline: still one request
                // (it was dropped with no reply), answered as the client waits for it.
                if !gotRequest, !input.isEmpty, !peerGone {
                    gotRequest = true
                    cancelTimeout()
                    let line = input
                    input.removeAll()
                    peerShutWrite = true
                    watch()
                    server.handle(self, line: line)
                    return
                }
                // The client went away, or half-closed after a request it still
                // waits for: keep the connection for the reply (and stop
                // watching a readable EOF, which would fire forever). Either
                // way a running command goes on.
                if peerGone || !gotRequest || (closeAfterFlush && output.isEmpty) {
                    close()
                } else {
                    peerShutWrite = true
                    watch()
                }
                return
            }
            guard !gotRequest else { continue }  // one request per connection
            input.append(contentsOf: buffer[0..<n])
            if let newline = input.firstIndex(of: 0x0A) {
                gotRequest = true
                cancelTimeout()
                let line = Array(input[..<newline])
                input.removeAll()
                server.handle(self, line: line)
            } else if input.count > ControlProtocol.maxRequestBytes {
                gotRequest = true
                cancelTimeout()
                let refusal = "request too large (over \(ControlProtocol.maxRequestBytes) bytes without a newline)"
                // Logged like every other rejected request (it was the only one that left no line).
                server.logger.warning("control: rejected request: \(refusal)", metadata: ["peer_uid": .stringConvertible(peer?.uid ?? 0)])
                finish(.failure(refusal, code: 2))
            }
        }
    }

    /// Queues a progress line.
    func send(_ reply: ControlReply) {
        guard !isClosed else { return }
        output += ControlProtocol.encodeLine(reply)
        flush()
    }

    /// Queues the final reply and closes once it is written.
    func finish(_ reply: ControlReply) {
        guard !isClosed else { return }
        closeAfterFlush = true
        send(reply)
    }

    func flush() {
        guard !isClosed else { return }
        let before = output.count
        switch Sockets.sendAvailable(fd, &output) {
        case .drained:
            cancelTimeout()
            if closeAfterFlush {
                close()
                return
            }
        case .wouldBlock:
            // A peer that takes nothing for idle_timeout is dropped.
            if timer == nil || output.count < before { armTimeout(.reply) }
        case .failed:
            close()
            return
        }
        watch()
    }

    /// Watches for input until the peer half-closed, and for writability while a reply is pending.
    private func watch() {
        var events: EventLoop.Events = peerShutWrite ? [] : .readable
        if !output.isEmpty { events.insert(.writable) }
        server.loop.modify(fd: fd, events: events)
    }

    private func close() {
        guard !isClosed else { return }
        isClosed = true
        cancelTimeout()
        server.closed(self)
    }
}
