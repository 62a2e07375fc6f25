import BatonCore
import BatonSystem
import Glibc
import Logging
import Prometheus

/// The Prometheus endpoint (`[metrics] address`, off by default, loopback in
/// the examples): per-worker memory, restarts by reason, deploys by outcome
/// and memory headroom, in the text exposition format. A tiny HTTP/1.0
/// responder on the event loop: one request a connection, then close.
final class MetricsServer {
    let fd: Int32
    /// Where it listens ("127.0.0.1:9187").
    let address: String
    unowned let loop: EventLoop
    unowned let supervisor: Supervisor
    let registry = PrometheusCollectorRegistry()
    /// `LogWriter.standardError.droppedBytes` at the last scrape (the counter grows by the difference).
    private var countedLogDrops: UInt64 = 0
    /// Open scrapes by descriptor.
    private var connections: [Int32: Connection] = [:]

    /// One scrape: the request read so far, then what is left of the response to send.
    private struct Connection {
        var request: [UInt8] = []
        var response: [UInt8]?
        /// Closes a scrape that is not done within 5 s; cancelled when it closes, so it
        /// never touches a later connection that reuses the descriptor.
        var timeout: EventLoop.Token?
    }

    init(address: ListenAddress, loop: EventLoop, supervisor: Supervisor) throws {
        let listener = try Sockets.bind(address, mode: 0o660, backlog: 64)
        fd = listener.fd
        self.address = listener.address
        self.loop = loop
        self.supervisor = supervisor
        try setNonBlocking(fd)
        try loop.register(fd: fd, events: .readable) { [unowned self] _ in self.acceptAll() }
    }

    private func acceptAll() {
        while true {
            let client = Sockets.acceptNonBlocking(fd)
            if client < 0 { return }
            guard connections.count < 32 else {
                close(client)
                continue
            }
            do {
                try loop.register(fd: client, events: .readable) { [unowned self] _ in self.service(client) }
            } catch {
                close(client)
                continue
            }
            var connection = Connection()
            connection.timeout = loop.schedule(after: .seconds(5)) { [weak self] in self?.closeConnection(client) }
            connections[client] = connection
        }
    }

    /// Reads the request until its header ends, or goes on sending the response.
    private func service(_ client: Int32) {
        guard let connection = connections[client] else { return }
        if connection.response != nil {
            flush(client)
            return
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(client, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        if n <= 0 {
            closeConnection(client)
            return
        }
        let request = connection.request + buffer[0..<n]
        connections[client]?.request = request
        guard let end = Self.headerEnd(request) else {
            if request.count > 8192 { respond(client, status: "431 Request Header Fields Too Large") }
            return
        }
        let line = String(decoding: request[..<end], as: UTF8.self).split(separator: "\r\n").first ?? ""
        if line.hasPrefix("GET /metrics ") || line.hasPrefix("GET / ") {
            respond(client, status: "200 OK", body: render())
        } else {
            respond(client, status: "404 Not Found", body: Array("try GET /metrics\n".utf8))
        }
    }

    private func respond(_ client: Int32, status: String, body: [UInt8] = []) {
        let head = "HTTP/1.0 \(status)\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        connections[client]?.response = Array(head.utf8) + body
        flush(client)
    }

    /// Sends what the socket takes; the rest when it is writable again (a few
    /// hundred workers make a response larger than a socket buffer).
    private func flush(_ client: Int32) {
        guard var rest = connections[client]?.response else { return }
        if Sockets.sendAvailable(client, &rest) == .wouldBlock {
            connections[client]?.response = rest
            loop.modify(fd: client, events: .writable)
            return
        }
        closeConnection(client)
    }

    private func closeConnection(_ client: Int32) {
        guard let connection = connections.removeValue(forKey: client) else { return }
        if let timeout = connection.timeout { loop.cancel(timeout) }
        loop.unregister(fd: client)
        close(client)
    }

    private static func headerEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Sets the gauges from the supervisor's current state and emits them.
    private func render() -> [UInt8] {
        let s = supervisor
        for slot in s.slots {
            let labels = [("slot", String(slot.index))]
            let m = slot.current?.memory
            registry.makeGauge(name: "baton_worker_rss_bytes", labels: labels).set(Double(m?.rss ?? 0))
            registry.makeGauge(name: "baton_worker_pss_bytes", labels: labels).set(Double(m?.pss ?? 0))
            registry.makeGauge(name: "baton_worker_uss_bytes", labels: labels).set(Double(m?.uss ?? 0))
            registry.makeGauge(name: "baton_worker_ready", labels: labels).set(Double(slot.current?.state == .ready ? 1 : 0))
            let leak = slot.current?.history.leakRate?.mibPerHour ?? 0
            registry.makeGauge(name: "baton_worker_leak_mib_per_hour", labels: labels).set(leak)
        }
        for (reason, count) in s.restartsByReason {
            registry.makeGauge(name: "baton_restarts", labels: [("reason", reason)]).set(Double(count))
        }
        var outcomes: [String: Int] = [:]
        for entry in s.history where entry.kind == "deploy" { outcomes[entry.outcome, default: 0] += 1 }
        for (outcome, count) in outcomes {
            registry.makeGauge(name: "baton_deploys", labels: [("outcome", outcome)]).set(Double(count))
        }
        if let (verdict, _) = try? s.preflightFromLastSample(release: nil, need: 0) {
            registry.makeGauge(name: "baton_memory_headroom_bytes", labels: [("binding", verdict.binding.kind.name)])
                .set(Double(verdict.binding.available))
        }
        let drops = LogWriter.standardError.droppedBytes
        registry.makeCounter(name: "baton_log_dropped_bytes_total").increment(by: Int64(drops - countedLogDrops))
        countedLogDrops = drops
        return registry.emitToBuffer()
    }
}
