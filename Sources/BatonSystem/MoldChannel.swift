import BatonCore
import CBatonLinux
import FoundationEssentials
import Glibc

/// Why a mold could not give a worker, as one line (`mold did not answer within 10s`).
public struct MoldError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message.
    public var description: String
    /// Creates an error.
    public init(_ description: String) { self.description = description }
}

/// A spawn request as it travels to the mold (docs/MOLD.md, "spawn").
struct MoldSpawnMessage: Codable, Equatable {
    var op = "spawn"
    var id: Int
    var env: [String]
    var fds: [Int32]
    var listenPID: Bool
    var watchdogPID: Bool

    enum CodingKeys: String, CodingKey {
        case op, id, env, fds
        case listenPID = "listen_pid"
        case watchdogPID = "watchdog_pid"
    }
}

/// `{"op": "promote"}` and its answer `{"op": "promoted"}` (with `error` when it cannot).
struct MoldPromoteMessage: Codable, Equatable {
    var op: String
    var error: String?
}

/// A mold's reply: a pid, or an error.
struct MoldReplyMessage: Codable, Equatable {
    var id: Int?
    var pid: Int32?
    var error: String?
}

/// A new channel (``MoldChannel/pair()``): baton's end, and the end for the child (a mold, or
/// a worker that may be promoted to one), owned until a caller consumes it or lets the pair go.
@frozen public struct MoldChannelPair: ~Copyable {
    /// baton's end.
    public let channel: MoldChannel
    /// The child's end (close-on-exec: the launcher places it in the child).
    public var otherEnd: OwnedDescriptor
}

/// baton's end of the channel to a mold (a `SOCK_SEQPACKET` unix socket pair, docs/MOLD.md):
/// one JSON object per datagram, descriptors as `SCM_RIGHTS`. A spawn is one synchronous round
/// trip, bounded by a timeout: the caller (the event loop) opens the worker's pidfd before it
/// handles any SIGCHLD, so that a forked worker is known before anything could reap it as a
/// stray.
public final class MoldChannel {
    /// baton's end, owned (closed once, with the channel).
    private let end: OwnedDescriptor
    /// Its number.
    public var fd: Int32 { end.rawValue }
    private var nextID = 1

    /// A new socket pair, both ends close-on-exec and owned from the start: the channel for
    /// baton, and the other end, which the launcher places in the child and which closes with
    /// the pair once the child has its copy (or the spawn failed).
    public static func pair() throws(SystemError) -> MoldChannelPair {
        var fds: [Int32] = [-1, -1]
        try syscall("socketpair(SOCK_SEQPACKET)") { CBatonLinux_seqpacket_pair(&fds) }
        return MoldChannelPair(channel: MoldChannel(end: OwnedDescriptor(fds[0])), otherEnd: OwnedDescriptor(fds[1]))
    }

    /// Owns `end`, baton's end of a channel, from now on.
    public init(end: consuming OwnedDescriptor) { self.end = end }

    /// The datagram and descriptors of `request`: the worker's environment (without
    /// LISTEN_PID/WATCHDOG_PID), its listening sockets at 3.., its output at 1 and 2, and the
    /// hold descriptor at its target.
    static func message(for request: SpawnRequest, id: Int) -> (message: MoldSpawnMessage, fds: [Int32]) {
        var attached: [Int32] = []
        var targets: [Int32] = []
        for (i, fd) in request.passFDs.enumerated() {
            attached.append(fd)
            targets.append(3 + Int32(i))
        }
        if request.stdout >= 0 {
            attached.append(request.stdout)
            targets.append(1)
        }
        if request.stderr >= 0 {
            attached.append(request.stderr)
            targets.append(2)
        }
        if request.holdFD >= 0, request.holdTarget > 0 {
            attached.append(request.holdFD)
            targets.append(request.holdTarget)
        }
        let env = request.environment.filter { !$0.hasPrefix("LISTEN_PID=") && !$0.hasPrefix("WATCHDOG_PID=") }
        let message = MoldSpawnMessage(
            id: id, env: env, fds: targets, listenPID: request.setListenPID, watchdogPID: request.setWatchdogPID)
        return (message, attached)
    }

    /// Asks the mold for a worker and waits at most `timeout` for its reply; returns the
    /// worker with a pidfd, checked to be baton's own child (the mold double-forked).
    public func spawn(_ request: SpawnRequest, timeout: Duration) throws(MoldError) -> ChildProcess {
        let id = nextID
        nextID += 1
        let (message, fds) = Self.message(for: request, id: id)
        guard let body = try? JSONEncoder().encode(message) else { throw MoldError("cannot encode the spawn request") }
        let bytes = [UInt8](body)
        let sent = bytes.withUnsafeBytes { raw in
            fds.withUnsafeBufferPointer { CBatonLinux_send_with_fds(fd, raw.baseAddress, raw.count, $0.baseAddress, Int32($0.count)) }
        }
        if sent < 0 { throw MoldError("cannot send to the mold: \(String(cString: strerror(errno)))") }
        let reply = try receiveReply(id: id, timeout: timeout)
        if let error = reply.error { throw MoldError("the mold could not fork: \(error)") }
        guard let pid = reply.pid, pid > 0 else { throw MoldError("the mold's reply has no pid") }
        let child: ChildProcess
        do {
            child = ChildProcess(pid: pid, pidfd: OwnedDescriptor(try CBatonLinuxShim.pidfdOpen(pid)))
        } catch {
            throw MoldError("the mold's worker \(pid) is gone: \(error)")
        }
        // Only baton's own children can be reaped (and their exit read) through the pidfd.
        let parent = ProcFS.parentPID(of: pid)
        guard parent == getpid() else {
            throw MoldError("the mold's worker \(pid) is not baton's child (its parent is \(parent.map(String.init) ?? "unknown"))")
        }
        return child
    }

    /// The reply to request `id`, waiting at most `timeout` in all.
    private func receiveReply(id: Int, timeout: Duration) throws(MoldError) -> MoldReplyMessage {
        let deadline = monotonicNow() + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - monotonicNow()
            guard left > .zero else { throw MoldError("the mold did not answer within \(Units.formatDuration(timeout))") }
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, ms)
            if ready < 0 {
                if errno == EINTR { continue }
                throw MoldError("poll on the mold's channel: \(String(cString: strerror(errno)))")
            }
            if ready == 0 { continue }
            var truncated: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { CBatonLinux_recv_dropping_fds(fd, $0.baseAddress, $0.count, &truncated) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw MoldError("cannot read the mold's reply: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw MoldError("the mold closed its channel") }
            guard truncated == 0, let reply = try? JSONDecoder().decode(MoldReplyMessage.self, from: Data(buffer[0..<n])) else {
                throw MoldError("the mold's reply is not a JSON reply object")
            }
            // A reply to an older request (answered after it timed out) is skipped.
            if let replyID = reply.id, replyID < id { continue }
            return reply
        }
    }

    // MARK: - Promotion (refork)

    /// Asks the worker at the other end to become a mold (docs/MOLD.md, "Refork").
    public func sendPromote() throws(MoldError) {
        guard let body = try? JSONEncoder().encode(MoldPromoteMessage(op: "promote")) else { throw MoldError("cannot encode") }
        let bytes = [UInt8](body)
        let sent = bytes.withUnsafeBytes { CBatonLinux_send_with_fds(fd, $0.baseAddress, $0.count, nil, 0) }
        if sent < 0 { throw MoldError("cannot send the promotion: \(String(cString: strerror(errno)))") }
    }

    /// The worker's answer to `sendPromote()` without waiting: true once it is a mold, nil
    /// while no answer came; throws when it refused, closed the channel or answered nonsense.
    public func receivePromoted() throws(MoldError) -> Bool? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { CBatonLinux_recv_dropping_fds(fd, $0.baseAddress, $0.count, &truncated) }
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { return nil }
            throw MoldError("cannot read the promotion's answer: \(String(cString: strerror(errno)))")
        }
        if n == 0 { throw MoldError("the worker closed its channel") }
        guard truncated == 0, let answer = try? JSONDecoder().decode(MoldPromoteMessage.self, from: Data(buffer[0..<n])),
            answer.op == "promoted"
        else { throw MoldError("the worker's answer is not {\"op\": \"promoted\"}") }
        if let error = answer.error { throw MoldError("the worker cannot be promoted: \(error)") }
        return true
    }
}
