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
    /// Held back from the others for root and baton's own uid: the operator always gets in.
    static let reservedForRoot = 8
    /// Clients at once of one uid other than root and baton's. A sockets audit: a read_group
    /// member holding the 64 connections (reopening each one closed at the idle timeout) locked
    /// root and the control group out, 25 of 25 `baton status` exit 3.
    static let maxPerPeer = 16
    /// Clients at once that follow an operation (deploy, rollback, attach, reload, preflight,
    /// upgrade: held until it ends, a queue's worth): the rest of the room is left to the short
    /// requests (a CI audit: 71 root CI jobs waiting in the queue held every connection, and
    /// the operator's `baton status` exited 3).
    static let maxFollowers = 48
    /// `[control] idle_timeout`.
    let idleTimeout: Duration
    /// Accepts the clients, pausing while descriptors run out.
    private var acceptPause: AcceptPause
    /// The file baton bound at `path` (device, inode), to tell it from one put there since.
    private var boundFile: FileIdentity?
    /// What the last look found wrong, said once until it changes.
    private var pathTrouble: String?
    /// Peers refused at connect, logged at most once per 10 s (any local user may connect
    /// when there is a `read_group`).
    private var connectRefusals = WarningThrottle()
    /// Requests refused or rejected of peers other than root and baton's uid, logged at most
    /// once per 10 s: a read_group member could write a line per request (a sockets audit: 40,038 refused
    /// reloads in 8 s, 6.5 MB of log).
    private var requestRefusals = WarningThrottle()

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
            // The mode and group this image binds with (a sockets audit: after `baton upgrade` to
            // an image that opens the socket to a read_group, it stayed 0660 and the group got
            // "Permission denied" until a restart).
            Self.setModeAndGroup(path, openToAll: readGroupID != nil, group: groupID)
        } else {
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if !directory.isEmpty { createdDirectories = try Filesystem.makeDirectory(directory, mode: 0o755) }
            let socket = try Self.bindListening(at: path, group: groupID, openToAll: readGroupID != nil, removingOnFailure: false)
            socketFD = socket.rawValue
            listening = consume socket
        }
        acceptPause = Self.acceptPause(loop: loop, fd: socketFD, logger: logger)
        try loop.register(fd: fd, events: .readable) { [unowned self] _ in self.acceptAll() }
        boundFile = FileIdentity(path: path)
    }

    /// The listening socket at `path`: mode 0660, `[control] group`, non-blocking; with
    /// `openToAll` (a `read_group`, whose members a file's one group cannot let in) 0666, and a
    /// peer that may run nothing is refused at connect, before it sends a byte (as the D-Bus
    /// system bus's 0666 socket leaves the decision to its policy). Owned from the bind: a
    /// failure after it closes it (and, `removingOnFailure`, removes its file).
    private static func bindListening(at path: String, group: gid_t?, openToAll: Bool, removingOnFailure: Bool) throws -> OwnedDescriptor {
        let mode: UInt32 = openToAll ? 0o666 : 0o660
        let socket = OwnedDescriptor(try Sockets.bindUnix(path: path, type: Int32(SOCK_STREAM.rawValue), mode: mode, group: group))
        do {
            try setNonBlocking(socket.rawValue)
            try BatonSystem.syscall("listen", subject: path) { listen(socket.rawValue, 64) }
        } catch {
            if removingOnFailure { unlink(path) }
            throw error
        }
        return socket
    }

    /// Gives the socket file at `path` the mode and group ``bindListening`` gives a new one.
    private static func setModeAndGroup(_ path: String, openToAll: Bool, group: gid_t?) {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return }
        if let group, info.st_gid != group { _ = chown(path, uid_t.max, group) }
        _ = chmod(path, openToAll ? 0o666 : 0o660)
    }

    /// Accepts on `fd`, pausing while descriptors run out.
    private static func acceptPause(loop: EventLoop, fd: Int32, logger: Logger) -> AcceptPause {
        AcceptPause(loop: loop, fd: fd) { [logger] in logger.error("control socket: \($0)") }
    }

    /// Binds the socket again when its file is gone (as tmux does for its own), in its folder if
    /// that is there (the supervisor makes its runtime directory again; another folder removed
    /// may be a test's, or the operator's, on its way out); a different file at `path` (another
    /// process's) is left alone. What stays wrong is said once. A socket removed from under a
    /// running baton (`rm`, a tmpfiles clean-up) left every CLI command unable to reach it until
    /// a restart. Called every `Supervisor.runtimeCheckInterval`.
    func checkPath() {
        guard listening != nil else { return }
        var trouble: String?
        if let now = FileIdentity(path: path) {
            if let bound = boundFile, now == bound {
                trouble = nil
            } else {
                trouble = "\(path) is no longer the socket baton bound (another file is there): the CLI cannot reach this baton; left alone"
            }
        } else {
            do {
                try rebind()
                logger.warning("control socket \(path) was removed: bound it again")
            } catch {
                trouble =
                    "\(path) was removed and cannot be bound again (\(error)); the next try is in \(Units.formatDuration(Supervisor.runtimeCheckInterval))"
            }
        }
        if let trouble, trouble != pathTrouble { logger.error("control socket: \(trouble)") }
        pathTrouble = trouble
    }

    /// A new listening socket at `path` in place of the one whose file is gone.
    private func rebind() throws {
        let socket = try Self.bindListening(at: path, group: groupID, openToAll: readGroupID != nil, removingOnFailure: true)
        acceptPause.cancel()
        loop.unregister(fd: fd)
        let socketFD = socket.rawValue
        listening = consume socket  // closes the old one
        acceptPause = Self.acceptPause(loop: loop, fd: socketFD, logger: logger)
        boundFile = FileIdentity(path: path)
        try loop.register(fd: socketFD, events: .readable) { [unowned self] _ in self.acceptAll() }
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
        guard listening != nil else { return }
        acceptPause.cancel()
        loop.unregister(fd: fd)
        listening = nil  // closes it
        // Only baton's own file: another process's socket put there since stays.
        if let bound = boundFile, let now = FileIdentity(path: path), now == bound { unlink(path) }
        // Only the folders this server made for its socket, innermost first, and only if empty
        // (an operator audit found /run/baton/NAME, made for the default socket, left behind).
        for directory in createdDirectories.reversed() { rmdir(directory) }
        createdDirectories = []
    }

    private func acceptAll() {
        for _ in 0..<AcceptPause.perWakeup {
            guard let client = acceptPause.next() else { return }
            // Owns the socket from now on: a connection dropped below closes it.
            let connection = ControlConnection(fd: client, server: self)
            guard let peer = CBatonLinuxShim.peerCredentials(client) else { continue }
            connection.peer = peer
            connection.groups = CBatonLinuxShim.peerGroups(client)
            let peerPolicy = ControlPolicy.Peer(uid: peer.uid, groups: [peer.gid] + connection.groups)
            if let refusal = policy.connectRefusal(from: peerPolicy).map({ (message: $0, code: Int32?.none) }) ?? roomRefusal(for: peer.uid) {
                warn("control: connection refused for uid \(peer.uid): \(refusal.message)", metadata: nil, throttle: &connectRefusals)
                // The reply fits an empty socket buffer: one non-blocking send. It stays
                // readable after the close even if the client's request never arrives (its
                // send then fails with EPIPE; the CLI reads on).
                var reply = ControlProtocol.encodeLine(ControlReply.failure(refusal.message, code: refusal.code))
                _ = Sockets.sendAvailable(client, &reply)
                continue  // dropping the connection closes its socket
            }
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

    /// Why a client of `uid` finds no room (exit 3, the CLI's "could not reach the daemon"), or
    /// nil: `maxConnections` at once, `reservedForRoot` more for root and baton's uid, at most
    /// `maxPerPeer` of any other uid, and none that would leave baton fewer free descriptors than
    /// a worker's start needs (``Supervisor/clientDescriptorShortage()``).
    private func roomRefusal(for uid: uid_t) -> (message: String, code: Int32?)? {
        let privileged = policy.isPrivileged(uid)
        if !privileged, connections.values.count(where: { $0.peer?.uid == uid }) >= Self.maxPerPeer {
            return ("too many control connections of uid \(uid) (\(Self.maxPerPeer) open); try again later", 3)
        }
        if connections.count >= Self.maxConnections + (privileged ? Self.reservedForRoot : 0) {
            return ("too many control connections (\(connections.count) open); try again later", 3)
        }
        // Root's too: a worker that exits must be able to start again.
        return supervisor.clientDescriptorShortage().map { ("\($0); try again later", 3) }
    }

    /// A refused or rejected request's WARN line: root's and baton's own uid's each, anyone
    /// else's at most one per 10 s, with how many were held back.
    func warnRefused(_ text: String, uid: uid_t?) {
        let metadata: Logger.Metadata = ["peer_uid": .stringConvertible(uid ?? 0)]
        if let uid, policy.isPrivileged(uid) {
            logger.warning("\(text)", metadata: metadata)
        } else {
            warn(text, metadata: metadata, throttle: &requestRefusals)
        }
    }

    /// `text` as a WARN line if `throttle` lets it through, with how many it held back.
    private func warn(_ text: String, metadata: Logger.Metadata?, throttle: inout WarningThrottle) {
        guard let held = throttle.admit(now: loop.now()) else { return }
        let more = held > 0 ? " (\(held) more refused since the last line)" : ""
        logger.warning("\(text)\(more)", metadata: metadata)
    }

    /// Why the peer may not run `request` (`ControlPolicy`), or nil when it may.
    func refusal(_ connection: ControlConnection, _ request: ControlRequest) -> String? {
        guard let peer = connection.peer else { return "permission denied: no peer credentials" }
        return policy.refusal(request, from: .init(uid: peer.uid, groups: [peer.gid] + connection.groups))
    }

    /// Who may do what (README, "Who may do what").
    private var policy: ControlPolicy {
        ControlPolicy(daemonUID: geteuid(), controlGroup: groupID, readGroup: readGroupID, workerUID: supervisor.workerUID ?? geteuid())
    }

    private func connectionEvent(_ connection: ControlConnection, _ events: EventLoop.Events) {
        if events.contains(.writable) { connection.flush() }
        if !events.isDisjoint(with: [.readable, .hangup, .error]) {
            connection.readAvailable(peerGone: !events.isDisjoint(with: [.hangup, .error]))
        }
    }

    func handle(_ connection: ControlConnection, line: [UInt8]) {
        let request: ControlRequest
        switch ControlProtocol.decodeRequest(line) {
        case .failure(let error):
            warnRefused("control: rejected request: \(error.message)", uid: connection.peer?.uid)
            // A request that is not one baton can take is bad input, as a usage error is: exit 2.
            connection.finish(.failure(error.message, code: 2))
            return
        case .success(let r):
            request = r
        }
        // A client whose config names another app reached this socket (a day-2 audit: a config
        // with another app's [control] socket deployed into that app, exit 0): refused as a
        // config error, before anything is done.
        if let app = request.app, app != supervisor.appName {
            let problem =
                "this control socket (\(path)) is app \"\(ControlProtocol.printable(supervisor.appName))\"'s, not \"\(ControlProtocol.printable(app))\"'s: give each app a [control] socket of its own"
            warnRefused("control: \(request.cmd) refused: \(problem)", uid: connection.peer?.uid)
            connection.finish(.failure(problem, code: 2))
            return
        }
        guard let command = request.command else {
            // decodeRequest refuses these already.
            connection.finish(.failure("unknown command \"\(ControlProtocol.printable(request.cmd))\""))
            return
        }
        if let refusal = refusal(connection, request) {
            warnRefused("control: \(request.cmd) refused for uid \(connection.peer?.uid ?? 0): \(refusal)", uid: connection.peer?.uid)
            connection.finish(.failure(refusal))
            return
        }
        if command.follows {
            let following = connections.values.count { $0.follows }
            guard following < Self.maxFollowers else {
                let refusal = "too many clients following operations (\(following) open); try again later"
                warnRefused("control: \(request.cmd) refused for uid \(connection.peer?.uid ?? 0): \(refusal)", uid: connection.peer?.uid)
                connection.finish(.failure(refusal, code: 3))
                return
            }
            connection.follows = true
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

    func closed(_ connection: ControlConnection) {
        loop.unregister(fd: connection.fd)
        connections[connection.fd] = nil
        connection.socket = nil  // closes it
    }
}
