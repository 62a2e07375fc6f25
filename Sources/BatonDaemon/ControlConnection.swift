import BatonCore
import BatonSystem
import Glibc
import Logging

/// One client of the control socket: reads one request line, then receives
/// progress lines and one final reply. A client that goes away mid-command
/// does not cancel it; one that half-closes after its request still gets
/// the whole reply.
final class ControlConnection {
    /// The client's socket, owned until the server lets the connection go (`closed`).
    var socket: OwnedDescriptor?
    /// Its number; -1 once closed.
    var fd: Int32 { socket?.rawValue ?? -1 }
    unowned let server: ControlServer
    var peer: (pid: pid_t, uid: uid_t, gid: gid_t)?
    var groups: [gid_t] = []
    /// It asked for an operation it follows until it ends (``ControlServer/maxFollowers``).
    var follows = false
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
                server.warnRefused("control: rejected request: \(refusal)", uid: peer?.uid)
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
