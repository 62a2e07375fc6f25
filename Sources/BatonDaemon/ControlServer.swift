import BatonCore
import BatonSystem
import Glibc
import Logging

/// The control socket: a unix stream socket (mode 0660, group from config)
/// speaking line-delimited JSON. Peers are checked with SO_PEERCRED and
/// SO_PEERGROUPS; bad input gets an error reply and never hurts the daemon.
final class ControlServer {
    let path: String
    let fd: Int32
    unowned let loop: EventLoop
    unowned let supervisor: Supervisor
    let logger: Logger
    /// Group allowed every verb (besides root and baton's own uid).
    let groupID: gid_t?
    /// Group allowed read-only verbs.
    let readGroupID: gid_t?
    /// Open connections by fd.
    var connections: [Int32: ControlConnection] = [:]
    /// Clients at once; more are refused.
    static let maxConnections = 64

    /// Binds the socket (or, after an in-place upgrade, adopts the one the
    /// previous image listened on: it is never re-bound).
    init(adopting existing: Int32? = nil, config: BatonConfig, loop: EventLoop, logger: Logger, supervisor: Supervisor) throws {
        path = config.control.socket
        self.loop = loop
        self.logger = logger
        self.supervisor = supervisor
        groupID = try config.control.group.map { name throws in try Accounts.groupID(name) }
        readGroupID = try config.control.readGroup.map { name throws in try Accounts.groupID(name) }
        if let existing {
            fd = existing
        } else {
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if !directory.isEmpty { try Filesystem.makeDirectory(directory, mode: 0o755) }
            fd = try Sockets.bindUnix(path: path, type: Int32(SOCK_STREAM.rawValue), mode: 0o660, group: groupID)
            try setNonBlocking(fd)
            try BatonSystem.syscall("listen", subject: path) { listen(fd, 64) }
        }
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
            Glibc.close(client)
            return nil
        }
        connections[client] = connection
        return connection
    }

    /// Stops accepting (shutdown); open connections are finished by their owners.
    func close() {
        loop.unregister(fd: fd)
        Glibc.close(fd)
        unlink(path)
    }

    private func acceptAll() {
        while true {
            let client = Sockets.acceptNonBlocking(fd)
            if client < 0 { return }
            guard connections.count < Self.maxConnections else {
                writeAll(client, ControlProtocol.encodeLine(ControlReply.failure("too many control connections")))
                Glibc.close(client)
                continue
            }
            let connection = ControlConnection(fd: client, server: self)
            guard let peer = CBatonLinuxShim.peerCredentials(client) else {
                Glibc.close(client)
                continue
            }
            connection.peer = peer
            connection.groups = CBatonLinuxShim.peerGroups(client)
            do {
                try loop.register(fd: client, events: .readable) { [unowned self, unowned connection] events in
                    self.connectionEvent(connection, events)
                }
                connections[client] = connection
            } catch {
                Glibc.close(client)
            }
        }
    }

    /// Why the peer may not run `request` (`ControlPolicy`), or nil when it may.
    func refusal(_ connection: ControlConnection, _ request: ControlRequest) -> String? {
        guard let peer = connection.peer else { return "permission denied: no peer credentials" }
        let policy = ControlPolicy(
            daemonUID: geteuid(), controlGroup: groupID, readGroup: readGroupID, workerUID: supervisor.slots.first?.spec.credentials?.uid ?? geteuid())
        return policy.refusal(request, from: .init(uid: peer.uid, groups: [peer.gid] + connection.groups))
    }

    private func connectionEvent(_ connection: ControlConnection, _ events: EventLoop.Events) {
        if events.contains(.writable) { connection.flush() }
        if !events.isDisjoint(with: [.readable, .hangup, .error]) { connection.readAvailable() }
    }

    fileprivate func handle(_ connection: ControlConnection, line: [UInt8]) {
        let request: ControlRequest
        switch ControlProtocol.decodeRequest(line) {
        case .failure(let error):
            logger.warning("control: rejected request: \(error.message)", metadata: ["peer_uid": .stringConvertible(connection.peer?.uid ?? 0)])
            connection.finish(.failure(error.message))
            return
        case .success(let r):
            request = r
        }
        if let refusal = refusal(connection, request) {
            logger.warning("control: \(request.cmd) refused for uid \(connection.peer?.uid ?? 0): \(refusal)")
            connection.finish(.failure(refusal))
            return
        }
        if ControlProtocol.mutatingCommands.contains(request.cmd) {
            logger.info(
                "control: \(request.cmd) requested",
                metadata: ["peer_uid": .stringConvertible(connection.peer?.uid ?? 0), "peer_pid": .stringConvertible(connection.peer?.pid ?? 0)])
        }
        switch request.cmd {
        case "ping":
            connection.finish(.success("pong"))
        case "status":
            supervisor.requestStatus { connection.finish(.success(status: $0)) }
        case "reload":
            supervisor.requestReload(waiter: connection, uid: connection.peer?.uid)
        case "deploy", "rollback":
            supervisor.requestDeploy(
                kind: request.cmd == "deploy" ? .deploy : .rollback, options: request.deploy ?? DeployOptions(),
                waiter: connection, uid: connection.peer?.uid ?? 0)
        case "attach":
            supervisor.attach(connection)
        case "preflight":
            supervisor.requestPreflight(request.preflight ?? PreflightOptions(), waiter: connection, uid: connection.peer?.uid ?? 0)
        case "upgrade":
            supervisor.requestUpgrade(binary: request.binary, waiter: connection)
        case "history":
            connection.finish(ControlReply(ok: true, history: supervisor.history))
        case "releases", "prune-releases":
            supervisor.answerReleases(connection, prune: request.cmd == "prune-releases")
        default:
            connection.finish(.failure("unknown command \"\(ControlProtocol.printable(request.cmd))\""))
        }
    }

    fileprivate func closed(_ connection: ControlConnection) {
        loop.unregister(fd: connection.fd)
        connections[connection.fd] = nil
        Glibc.close(connection.fd)
    }
}

/// One client of the control socket: reads one request line, then receives
/// progress lines and one final reply. A client that goes away mid-command
/// does not cancel it.
final class ControlConnection {
    let fd: Int32
    unowned let server: ControlServer
    var peer: (pid: pid_t, uid: uid_t, gid: gid_t)?
    var groups: [gid_t] = []
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var gotRequest = false
    private var closeAfterFlush = false
    private(set) var isClosed = false

    init(fd: Int32, server: ControlServer) {
        self.fd = fd
        self.server = server
    }

    /// For an adopted connection whose request the previous image read.
    func markRequestReceived() { gotRequest = true }

    func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isClosed {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return }
            if n == 0 {
                // The client went away (or half-closed after a request it
                // still waits for: keep the connection for the reply).
                // Either way a running command goes on; its replies fail to
                // write and close the connection then.
                if !gotRequest || closeAfterFlush { close() } else { server.loop.unregister(fd: fd) }
                return
            }
            guard !gotRequest else { continue }  // one request per connection
            input.append(contentsOf: buffer[0..<n])
            if let newline = input.firstIndex(of: 0x0A) {
                gotRequest = true
                let line = Array(input[..<newline])
                input.removeAll()
                server.handle(self, line: line)
            } else if input.count > ControlProtocol.maxRequestBytes {
                gotRequest = true
                finish(.failure("request too large (over \(ControlProtocol.maxRequestBytes) bytes without a newline)"))
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
        switch Sockets.sendAvailable(fd, &output) {
        case .drained: break
        case .wouldBlock:
            server.loop.modify(fd: fd, events: [.readable, .writable])
            return
        case .failed:
            close()
            return
        }
        if closeAfterFlush {
            close()
        } else if !isClosed {
            server.loop.modify(fd: fd, events: .readable)
        }
    }

    private func close() {
        guard !isClosed else { return }
        isClosed = true
        server.closed(self)
    }
}
