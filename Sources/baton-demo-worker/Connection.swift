import CSystemd
import Glibc

/// One client connection, served by its own thread with blocking I/O.
///
/// The connection is *idle* while it waits for the first byte of its next request, and *in
/// flight* from that byte until its response is written. When the drain begins, an idle
/// connection is closed at once (its thread polls the drain pipe next to the socket); an
/// in-flight one is answered with `Connection: close` and then closed.
///
/// Two short graces keep the drain from failing requests that are already on their way: a
/// connection accepted but not yet read, and one whose last response left less than
/// `busyClientGrace` ago (a busy client's next request is usually in the air: without the
/// grace, a drain under a 16-client keep-alive load failed 1–3 requests; with 100 ms, 8 to 19
/// over 3 deploys and a reload on a host at load average 30, where a client's thread waits
/// that long for a CPU). A connection idle for longer is closed at once.
final class Connection {
    /// Largest request head (request line and headers); past it the answer is 431.
    static let headLimit = 16 * 1024
    /// How long after its accept a connection may take to send its first request once the
    /// drain has begun: the client connected to send one.
    static let firstRequestGrace: UInt64 = 1_000_000_000
    /// How long after its last response a kept-alive connection may take to send its next
    /// request once the drain has begun.
    static let busyClientGrace: UInt64 = 1_000_000_000

    private let fd: Int32
    private let server: Server
    /// Received bytes not consumed yet are `buffer[start..<end]`.
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Connection.headLimit, alignment: 1)
    private var start = 0
    private var end = 0
    /// When the connection was accepted or last answered (monotonic ns).
    private var lastActivity = monotonicNanos()
    /// A request is in flight, or the first one is still to come (see `WorkerState.accept`).
    private(set) var isBusy = true

    init(fd: Int32, server: Server) {
        self.fd = fd
        self.server = server
    }

    deinit { buffer.deallocate() }

    /// Requests between two `X_BATON_REQUESTS=` reports to the notify socket.
    static let requestsReportEvery = 64

    /// Serves requests until the client closes, asks to close, errs, or the drain ends it.
    /// The caller closes the socket.
    func run() {
        var served = 0
        while true {
            if start == end {
                guard waitForRequest(first: served == 0) else { return }
            }
            if !isBusy {
                isBusy = true
                server.state.requestArrived()
            }
            guard let head = readHead() else { return }
            if head.hasTransferEncoding {
                reject(status: 501, reason: "Not Implemented", body: "Transfer-Encoding is not supported\n")
                return
            }
            if head.expectsContinue && head.version == .http11 && head.contentLength > end - start {
                guard write("HTTP/1.1 100 Continue\r\n\r\n") else { return }
            }
            guard discardBody(length: head.contentLength) else { return }

            let number = server.state.countRequest()
            let response = server.respond(to: head, number: number)
            // Decided after the work is done: a request that was in flight when the drain
            // began is still answered, and tells its client to reconnect elsewhere.
            let keepAlive = head.wantsKeepAlive && !server.state.isDraining
            let sent = write(frame(response, keepAlive: keepAlive, withBody: head.method != "HEAD"))
            served += 1
            lastActivity = monotonicNanos()
            isBusy = false
            let goOn = server.state.requestAnswered()
            if server.options.logRequests { log("\(head.method) \(head.path) \(response.status) #\(number)") }
            // baton's max_requests counts what workers report: one datagram every
            // `requestsReportEvery` requests, at most one per 50 ms, keeps the cost off the
            // request path and off baton's loop (20k requests/s would be 300 datagrams/s);
            // never blocking (``Notify``).
            if number % Self.requestsReportEvery == 0, server.state.reportDue(now: lastActivity, interval: 50_000_000) {
                Notify.withoutBlocking("X_BATON_REQUESTS=\(number)")
            }
            if let limit = server.options.crashAfterRequests, number >= limit { crash() }
            guard sent && keepAlive && goOn else { return }
        }
    }

    // MARK: - Reading

    /// Waits, idle, for the next request's first bytes and reads them. False: close.
    private func waitForRequest(first: Bool) -> Bool {
        var polled = [
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: server.state.drainPipe.read, events: Int16(POLLIN), revents: 0),
        ]
        while poll(&polled, 2, -1) < 0 {
            guard errno == EINTR else { return false }
        }
        // Bytes that already arrived make the connection in flight, drain or not.
        if polled[0].revents != 0 { return fill() }
        // The drain began: wait out the grace, if any is left, then close.
        let deadline = lastActivity + (first ? Connection.firstRequestGrace : Connection.busyClientGrace)
        var socket = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let now = monotonicNanos()
            guard now < deadline else { return false }
            let ready = poll(&socket, 1, Int32((deadline - now) / 1_000_000) + 1)
            if ready < 0 && errno == EINTR { continue }
            return ready > 0 && fill()
        }
    }

    /// Reads until a whole request head is buffered and parses it; answers 400/431 itself.
    private func readHead() -> RequestHead? {
        while true {
            let result = RequestHead.parse(UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
            switch result {
            case .complete(let head, let length):
                start += length
                return head
            case .invalid(let reason):
                reject(status: 400, reason: "Bad Request", body: reason + "\n")
                return nil
            case .incomplete:
                if end - start >= Connection.headLimit {
                    reject(status: 431, reason: "Request Header Fields Too Large", body: "request head over 16 KiB\n")
                    return nil
                }
                guard fill() else { return nil }
            }
        }
    }

    /// Reads more bytes after the buffered ones. False on end of stream or error.
    private func fill() -> Bool {
        if start > 0 {
            if end > start {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: end - start)
            }
            end -= start
            start = 0
        }
        while true {
            let count = read(fd, buffer.baseAddress! + end, buffer.count - end)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            end += count
            return true
        }
    }

    /// Consumes and drops `length` body bytes, keeping whatever follows (a pipelined request).
    private func discardBody(length: Int) -> Bool {
        let buffered = min(length, end - start)
        start += buffered
        var remaining = length - buffered
        while remaining > 0 {
            start = 0
            end = 0
            guard fill() else { return false }
            let dropped = min(remaining, end)
            start = dropped
            remaining -= dropped
        }
        return true
    }

    // MARK: - Writing

    private func frame(_ response: Server.Response, keepAlive: Bool, withBody: Bool) -> String {
        let head = """
            HTTP/1.1 \(response.status) \(response.reason)\r
            Content-Type: text/plain\r
            Content-Length: \(response.body.utf8.count)\r
            X-Worker-Pid: \(processID)\r
            X-Release: \(server.releaseHeaderValue)\r
            Connection: \(keepAlive ? "keep-alive" : "close")\r
            \r

            """
        return withBody ? head + response.body : head
    }

    /// Writes all of `text`; false when the peer is gone. `MSG_NOSIGNAL`: a vanished client
    /// must not kill the worker with SIGPIPE.
    private func write(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let sent = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 && errno == EINTR { continue }
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }
    }

    /// Answers an error and closes gently: shutting down our side first and reading what the
    /// client still sends, because closing with unread data makes the kernel send a reset,
    /// which can destroy the answer before the client reads it.
    private func reject(status: Int, reason: String, body: String) {
        let response = Server.Response(status: status, reason: reason, body: body)
        guard write(frame(response, keepAlive: false, withBody: true)) else { return }
        shutdown(fd, Int32(SHUT_WR))
        let deadline = monotonicNanos() + 500_000_000
        var discarded = 0
        while discarded < 1 << 20 {
            let now = monotonicNanos()
            guard now < deadline else { return }
            var socket = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&socket, 1, Int32((deadline - now) / 1_000_000) + 1) > 0 else { return }
            let count = read(fd, buffer.baseAddress!, buffer.count)
            guard count > 0 else { return }
            discarded += count
        }
    }
}
