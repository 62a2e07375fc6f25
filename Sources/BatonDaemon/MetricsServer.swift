import BatonCore
import BatonSystem
import Glibc
import Logging
import Prometheus

/// The Prometheus endpoint (`[metrics] address`, off by default, loopback in
/// the examples): per-worker memory, restarts by reason, deploys by outcome
/// and memory headroom, in the text exposition format (names and types in the
/// README's metrics section). A tiny HTTP/1.0
/// responder on the event loop: one request a connection, then close.
final class MetricsServer {
    /// The listening socket, owned for the server's life.
    private let listener: Listener
    /// Its number.
    var fd: Int32 { listener.fd }
    /// Where it listens ("127.0.0.1:9187").
    let address: String
    unowned let loop: EventLoop
    /// Where each scrape's values come from (the supervisor, on the loop).
    unowned let source: any MetricsSource
    let registry = PrometheusCollectorRegistry()
    /// The gauges and counters the last scrape exported (counters with the value they were
    /// brought to), by name and labels: a series the next scrape does not export is
    /// unregistered, so it leaves the output.
    private var exportedGauges: [String: Gauge] = [:]
    private var exportedCounters: [String: (counter: Counter, value: Int)] = [:]
    /// Open scrapes by descriptor.
    private var connections: [Int32: Connection] = [:]
    /// Scrapes open at once; the oldest goes to make room for one more.
    static let maxConnections = 32
    /// Accepted so far: orders the open scrapes by age.
    private var accepted = 0
    /// Scrapes refused for want of descriptors, logged at most once per 10 s.
    private var refusals = WarningThrottle()
    /// Where errors go (the supervisor's log).
    private let report: (String) -> Void

    /// One scrape: its socket (owned: closed when the scrape is dropped), the request read so
    /// far, then what is left of the response to send.
    private final class Connection {
        let socket: OwnedDescriptor
        var request: [UInt8] = []
        var response: [UInt8]?
        /// Closes a scrape that is not done within 5 s; cancelled when it closes, so it
        /// never touches a later connection that reuses the descriptor.
        var timeout: EventLoop.Token?
        /// Its place in the order of accepts.
        let sequence: Int

        init(socket: Int32, sequence: Int) {
            self.socket = OwnedDescriptor(socket)
            self.sequence = sequence
        }
    }

    /// Accepts the scrapes, pausing while descriptors run out.
    private let acceptPause: AcceptPause

    /// A server on `address`, bound now, or on `existing`, the listening socket an image before
    /// `baton upgrade` bound (closed and bound again, the port refused scrapes for the execve, and
    /// a port taken meanwhile ended the new image after the upgrade had said it finished).
    init(
        address: ListenAddress, adopting existing: Int32? = nil, loop: EventLoop, source: any MetricsSource,
        report: @escaping (String) -> Void = { _ in }
    ) throws {
        let listener =
            try existing.map { Listener(fd: $0, name: "metrics", address: Sockets.localAddress($0) ?? address.description) }
            ?? Sockets.bind(address, mode: 0o660, backlog: Self.backlog)
        self.listener = listener
        self.address = listener.address
        self.loop = loop
        self.source = source
        self.report = report
        acceptPause = AcceptPause(loop: loop, fd: listener.fd, report: report)
        try setNonBlocking(fd)
        try loop.register(fd: fd, events: .readable) { [unowned self] _ in self.acceptAll() }
    }

    private func acceptAll() {
        for _ in 0..<AcceptPause.perWakeup {
            guard let client = acceptPause.next() else { return }
            // Owns the socket from now on: a scrape refused below closes it when dropped.
            accepted += 1
            let connection = Connection(socket: client, sequence: accepted)
            if let shortage = source.clientDescriptorShortage() {
                refuse(connection, shortage)
                continue  // dropping the connection closes its socket
            }
            if connections.count >= Self.maxConnections { makeRoom() }
            do {
                try loop.register(fd: client, events: .readable) { [unowned self] _ in self.service(client) }
            } catch {
                continue
            }
            connection.timeout = loop.schedule(after: .seconds(5)) { [weak self] in self?.closeConnection(client) }
            connections[client] = connection
            // Its request is usually there already: answered now, a scrape accepted in one batch
            // with more than 32 connections behind it is not closed for them before it is read
            // (a re-audit: 16 of 20 scrapes with 64 connections reopened as soon as closed).
            service(client)
        }
    }

    /// Closes the oldest scrape for a new one. A limits audit (20 of 20 scrapes failed): 32
    /// connections that each sent half a request kept every later scrape out, closed unanswered;
    /// a scrape is done within milliseconds, so only a flood faster than that outruns the oldest.
    /// Each gets a last read first, and one whose request came since it was accepted is answered
    /// instead (a re-audit, 64 connections reopened as soon as closed: 4 of 20 scrapes were
    /// closed with their request unread). One still sending its answer is passed over, unless
    /// every one is.
    private func makeRoom() {
        let byAge = connections.sorted { $0.value.sequence < $1.value.sequence }.map(\.key)
        for client in byAge where connections.count >= Self.maxConnections {
            guard connections[client]?.response == nil else { continue }
            service(client)
            if let connection = connections[client], connection.response == nil { closeConnection(client) }
        }
        if connections.count >= Self.maxConnections, let oldest = byAge.first(where: { connections[$0] != nil }) {
            closeConnection(oldest)
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
        var request = connection.request + buffer[0..<n]
        // Empty lines before the request line are skipped (RFC 9112, 2.2; a re-audit: two of
        // them ended the header before it, and the empty request line got a 405).
        if let first = request.firstIndex(where: { $0 != 10 && $0 != 13 }) { request.removeFirst(first) } else { request.removeAll() }
        connections[client]?.request = request
        guard let end = Self.headerEnd(request) else {
            if request.count > 8192 { respond(client, status: "431 Request Header Fields Too Large") }
            return
        }
        // The request line, its CR (if any) dropped: bare LF line ends are taken, as HTTP asks.
        var lineBytes = request[..<end].prefix { $0 != 10 }
        if lineBytes.last == 13 { lineBytes.removeLast() }
        let line = String(decoding: lineBytes, as: UTF8.self)
        // GET or HEAD of /metrics or /, a query string (a scrape's `params`) and a trailing slash
        // taken (an operator audit: `/metrics?x=1`, `/metrics/` and HEAD were 404), in origin or
        // absolute form (`GET http://host:9187/metrics`: a metrics audit, 404).
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        let method = words.first ?? ""
        let target = words.count > 1 ? Self.path(of: words[1]) : ""
        // A request line that is not `METHOD TARGET HTTP/d.d` (a re-audit: spaces alone got 405; a
        // metrics audit: `HTTP/` and a bare CR were taken).
        let version = words.count == 3 ? Self.version(words[2]) : nil
        if version == nil || lineBytes.contains(13) || method.isEmpty || !method.allSatisfy(Self.isTokenCharacter) {
            respond(client, status: "400 Bad Request", body: Array("try GET /metrics\n".utf8))
        } else if version?.major != 1 {
            respond(client, status: "505 HTTP Version Not Supported", body: Array("HTTP/1.0 or HTTP/1.1\n".utf8))
        } else if !Self.knownMethods.contains(method) {
            // HTTP's answer to a method the server does not know (RFC 9110, 15.6.2).
            respond(client, status: "501 Not Implemented", body: Array("only GET and HEAD /metrics\n".utf8), extra: "Allow: GET, HEAD\r\n")
        } else if method != "GET" && method != "HEAD" {
            respond(client, status: "405 Method Not Allowed", body: Array("only GET and HEAD /metrics\n".utf8), extra: "Allow: GET, HEAD\r\n")
        } else if ["/", "/metrics", "/metrics/"].contains(target) {
            respond(client, status: "200 OK", body: render(), headOnly: method == "HEAD")
        } else {
            respond(client, status: "404 Not Found", body: Array("try GET /metrics\n".utf8))
        }
    }

    /// Its listen backlog: connections that wait while the loop is busy (a metrics audit: with
    /// 64, 131 of 1,000 simultaneous scrapes were unanswered after 20 s, their SYNs dropped).
    static let backlog: Int32 = 1024

    /// The methods HTTP defines (RFC 9110, 9.3; PATCH, RFC 5789): refused with 405, any other
    /// token with 501.
    static let knownMethods: Set<Substring> = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]

    /// A character of a method token: letters, digits and `!#$%&'*+-.^_`|~` (RFC 9110, 5.6.2).
    static func isTokenCharacter(_ c: Character) -> Bool {
        guard c.isASCII else { return false }
        return c.isLetter || c.isNumber || "!#$%&'*+-.^_`|~".contains(c)
    }

    /// The version of `HTTP/d.d`; nil for anything else.
    static func version(_ word: Substring) -> (major: Int, minor: Int)? {
        let digits = Array(word.utf8.dropFirst(5))
        guard word.hasPrefix("HTTP/"), digits.count == 3, digits[1] == UInt8(ascii: "."),
            let major = digits.first.flatMap({ $0 >= 48 && $0 <= 57 ? Int($0 - 48) : nil }),
            let minor = digits.last.flatMap({ $0 >= 48 && $0 <= 57 ? Int($0 - 48) : nil })
        else { return nil }
        return (major, minor)
    }

    /// The path of a request target: its query dropped, and the scheme and authority of an
    /// absolute-form one.
    static func path(of target: Substring) -> Substring {
        let rest = target.prefix { $0 != "?" }
        // (The standard library's only: Foundation's range(of:) would link it into baton.)
        guard let colon = rest.firstIndex(of: ":"), rest[..<colon].allSatisfy(\.isLetter), rest[colon...].hasPrefix("://") else { return rest }
        let authority = rest[rest.index(colon, offsetBy: 3)...]
        return authority.firstIndex(of: "/").map { authority[$0...] } ?? "/"
    }

    /// A scrape refused for want of descriptors: a 503 in one non-blocking send (it fits an
    /// empty socket buffer), before its request is read; logged at most once per 10 s.
    private func refuse(_ connection: Connection, _ why: String) {
        if let held = refusals.admit(now: loop.now()) {
            report("scrape refused: \(why)\(held > 0 ? " (\(held) more since the last line)" : "")")
        }
        var reply = Self.response(status: "503 Service Unavailable", body: Array("\(why); try again later\n".utf8))
        _ = Sockets.sendAvailable(connection.socket.rawValue, &reply)
    }

    private func respond(_ client: Int32, status: String, body: [UInt8] = [], headOnly: Bool = false, extra: String = "") {
        connections[client]?.response = Self.response(status: status, body: body, headOnly: headOnly, extra: extra)
        flush(client)
    }

    /// A whole response: its head (`extra`: more header lines, each ending in CRLF) and, unless
    /// `headOnly`, `body`.
    private static func response(status: String, body: [UInt8], headOnly: Bool = false, extra: String = "") -> [UInt8] {
        // The exposition format's type for the metrics; plain text for an error.
        let type = status.hasPrefix("200") ? "text/plain; version=0.0.4" : "text/plain; charset=utf-8"
        let head = "HTTP/1.0 \(status)\r\nContent-Type: \(type)\r\n\(extra)Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : body)
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
        // Unregistered first; dropping the connection then closes its socket.
        withExtendedLifetime(connection) { loop.unregister(fd: client) }
    }

    /// Where the header ends: the empty line, `\r\n\r\n` or a bare `\n\n` (RFC 9112 lets a
    /// server take a lone LF as a line end; a request sent so was closed with no reply).
    static func headerEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 2 else { return nil }
        for i in 0...(data.count - 2) where data[i] == 10 {
            if data[i + 1] == 10 { return i }
            if i + 2 < data.count, data[i + 1] == 13, data[i + 2] == 10 { return i }
        }
        return nil
    }

    /// A snapshot of the supervisor's state now, in the registry. The registry keeps every series it ever
    /// made, with its last value; the series of a worker, slot or label value that is gone are
    /// unregistered here. (A fresh registry per scrape would cost O(n²) a family: it copies a
    /// family's series for each one it adds.) Counters follow counts baton keeps in memory since
    /// it started (carried across `baton upgrade`) and only increments; Prometheus takes a
    /// restart of baton as a counter reset.
    private func render() -> [UInt8] {
        let s = source.metricsSnapshot()
        var gauges: [String: Gauge] = [:]
        var counters: [String: (counter: Counter, value: Int)] = [:]
        func key(_ name: String, _ labels: [(String, String)]) -> String {
            ([name] + labels.map { "\($0.0)=\($0.1)" }).joined(separator: "\u{0}")
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ value: Double) {
            let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
            let gauge = labels.isEmpty ? registry.makeGauge(descriptor: descriptor) : registry.makeGauge(descriptor: descriptor, labels: labels)
            gauge.set(value)
            gauges[key(name, labels)] = gauge
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Int) {
            let descriptor = MetricNameDescriptor(metricName: name, unitName: "total", helpText: help)
            let counter = registry.makeCounter(descriptor: descriptor, labels: labels)
            let k = key(name, labels)
            let exported = exportedCounters[k].map { $0.counter === counter ? $0.value : 0 } ?? 0
            if value > exported { counter.increment(by: Int64(value - exported)) }
            counters[k] = (counter, max(value, exported))
        }

        gauge("baton_workers", "Worker slots (app.workers).", [], Double(s.slots.count))
        gauge("baton_workers_ready", "Slots whose serving worker is ready.", [], Double(s.readyCount))
        // Trouble now, not only once in a counter (a metrics audit: nothing in /metrics showed a
        // crash loop or a degraded baton while it lasted).
        gauge(
            "baton_slots_crash_looping", "Slots whose worker keeps failing to start or to stay up (crash_loop in status).", [],
            Double(s.slots.filter(\.crashLooping).count))
        gauge("baton_degraded", "1 when a rollback failed and the slots run a mix of releases (degraded in status), else 0.", [], s.degraded ? 1 : 0)
        for slot in s.slots {
            let ready = slot.ready ? 1.0 : 0.0
            gauge("baton_worker_ready", "1 when the slot's serving worker is ready, else 0.", [("slot", String(slot.index))], ready)
            for worker in slot.live {
                let labels = [("slot", String(slot.index)), ("pid", String(worker.pid))]
                gauge(
                    "baton_worker_info", "One series per live worker (serving, starting or draining) naming its release.",
                    labels + [("release", worker.release)], 1)
                gauge("baton_worker_start_time_seconds", "When the worker was started, seconds since the epoch.", labels, worker.startedAtWall)
            }
            guard let worker = slot.serving else { continue }
            let labels = [("slot", String(slot.index)), ("pid", String(worker.pid))]
            if let m = worker.memory {
                gauge("baton_worker_rss_bytes", "Resident set size of the serving worker's process tree.", labels, Double(m.rss))
                if let pss = m.pss { gauge("baton_worker_pss_bytes", "Proportional set size of the serving worker's process tree.", labels, Double(pss)) }
                if let uss = m.uss { gauge("baton_worker_uss_bytes", "Unique set size of the serving worker's process tree.", labels, Double(uss)) }
                if let shared = m.shared {
                    gauge(
                        "baton_worker_shared_bytes", "Shared resident memory (Shared_Clean + Shared_Dirty) of the serving worker's process tree.",
                        labels, Double(shared))
                }
                if let ksm = m.ksm {
                    gauge(
                        "baton_worker_ksm_profit_bytes", "Bytes KSM merging saves in the serving worker's process tree (ksm_process_profit).",
                        labels, Double(ksm.profit))
                }
            }
            if let requests = worker.requests {
                gauge("baton_worker_requests", "Requests the serving worker reported serving (X_BATON_REQUESTS=).", labels, Double(requests))
            }
            if let leak = worker.leakMiBPerHour {
                gauge(
                    "baton_worker_uss_growth_bytes_per_second", "Fitted USS growth of the serving worker (leak rate).", labels,
                    leak * 1_048_576 / 3600)
            }
        }

        var restarts = Dictionary(uniqueKeysWithValues: RestartReason.allCases.map { ($0.rawValue, 0) })
        for (reason, count) in s.restartsByReason { restarts[reason.rawValue, default: 0] += count }
        for (reason, count) in restarts.sorted(by: { $0.key < $1.key }) {
            counter("baton_restarts", "Worker restarts since baton started, by reason.", [("reason", reason)], count)
        }
        let oomHelp = "Kernel OOM kills in the slot's process tree since baton started (slot none: elsewhere in baton's cgroup)."
        for slot in s.slots { counter("baton_oom_kills", oomHelp, [("slot", String(slot.index))], s.oomKillsBySlot[slot.index] ?? 0) }
        counter("baton_oom_kills", oomHelp, [("slot", "none")], s.oomKillsTotal - s.oomKillsBySlot.values.reduce(0, +))
        var deploys = Dictionary(uniqueKeysWithValues: OperationOutcome.finished.map { ($0.rawValue, 0) })
        for (outcome, count) in s.deploysByOutcome { deploys[outcome.rawValue, default: 0] += count }
        for (outcome, count) in deploys.sorted(by: { $0.key < $1.key }) {
            counter("baton_deploys", "Deploys finished since baton started, by outcome.", [("outcome", outcome)], count)
        }
        if let headroom = s.headroom {
            gauge(
                "baton_memory_headroom_bytes", "Memory headroom under the binding limit, which the label names.",
                [("binding", headroom.binding)], Double(headroom.availableBytes))
        }
        if let r = s.reservation {
            gauge("baton_reservation_bytes", "Memory held free by preflight --roll-ahead (--need), margin not included.", [], Double(r.bytes))
            gauge("baton_reservation_remaining_seconds", "Hold left on the memory reservation.", [], r.remainingSeconds)
            gauge("baton_reservation_rolls", "Workers rolled to keep the memory reservation while it is held.", [], Double(r.rolls))
        }
        if let mold = s.mold {
            gauge("baton_mold_up", "1 when the current release's mold is ready (mold mode), else 0.", [], mold.up ? 1 : 0)
            counter("baton_mold_restarts", "Molds that died and were started again since baton started.", [], mold.restarts)
        }
        counter(
            "baton_log_dropped_bytes", "Bytes of baton's own log dropped because stderr did not take them.", [],
            Int(s.logDroppedBytes))
        for (k, gauge) in exportedGauges where gauges[k] == nil { registry.unregisterGauge(gauge) }
        for (k, entry) in exportedCounters where counters[k] == nil { registry.unregisterCounter(entry.counter) }
        exportedGauges = gauges
        exportedCounters = counters
        return registry.emitToBuffer()
    }
}
