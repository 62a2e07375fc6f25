import BatonSystem
import Glibc
import Synchronization

/// A bounded HTTP/1.1 keep-alive load generator that counts every failure:
/// refused or reset connections, timeouts (over 10 s), non-2xx answers.
///
/// Like every HTTP client, it retries an idempotent request once on a new
/// connection when a *reused* keep-alive connection was closed by the server
/// before any byte of the response (the server closed an idle connection as
/// the request crossed it, RFC 9112 §9.3.1); those are counted in
/// `idleCloseRetries`, and only a failure of the retry counts as failed.
public final class LoadClient: @unchecked Sendable {
    // @unchecked: shared counters are in a Mutex; the rest is immutable.
    /// What the run saw.
    public struct Report: Sendable, CustomStringConvertible {
        /// 2xx answers.
        public var ok = 0
        /// Failed requests, by kind ("refused", "reset", "timeout", "status 503", ...).
        public var failures: [String: Int] = [:]
        /// Retries after an idle keep-alive close.
        public var idleCloseRetries = 0
        /// Worker pids that answered.
        public var pids: Set<Int32> = []
        /// Releases seen, in the order they first appeared.
        public var releases: [String] = []
        /// Every answered request: when it completed and how long it took
        /// (only with `recordLatencies`).
        public var samples: [LatencySample] = []
        /// When each failure happened and its kind (only with `recordLatencies`).
        public var failureEvents: [(at: Duration, kind: String)] = []
        /// Total failed.
        public var failed: Int { failures.values.reduce(0, +) }
        /// One line.
        public var description: String {
            "ok=\(ok) failed=\(failed) \(failures) idle-close-retries=\(idleCloseRetries) pids=\(pids.count) releases=\(releases)"
        }
    }

    private let port: UInt16
    private let address: UInt32
    private let path: String
    private let recordLatencies: Bool
    private let pace: Duration
    private let report = Protected(Report())
    private let stopFlag = Protected(false)
    private var threads: [Thread] = []

    /// Starts `connections` keep-alive clients against 127.0.0.1:`port` (or `address`,
    /// IPv4 in host byte order). They stop by themselves after `maxDuration` or
    /// `maxRequests` each. Each connection starts a request at most every `pace` (`.zero`:
    /// back to back).
    public init(
        port: UInt16, connections: Int, path: String = "/", maxDuration: Duration = .seconds(120), maxRequests: Int = 200_000,
        recordLatencies: Bool = false, address: UInt32 = 0x7F00_0001, pace: Duration = LoadClient.defaultPace
    ) {
        self.pace = pace
        self.port = port
        self.address = address
        self.path = path
        self.recordLatencies = recordLatencies
        let deadline = monotonicNow() + maxDuration
        for _ in 0..<connections {
            threads.append(Thread { [self] in self.clientLoop(deadline: deadline, maxRequests: maxRequests) })
        }
    }

    /// The tests' pace: each connection sends at most one request per 2 ms (8 connections: up
    /// to 4,000 requests a second). The suite's chains share two cores with baton and the
    /// workers; unpaced, the clients took most of them (the playbook's load sent 381,144
    /// requests to one host). Paced, the same suite took 107 s of CPU-bound test phase where it
    /// took 133 s (user+sys 156 s against 238 s), and every handover still sees traffic. The
    /// benchmarks, which measure throughput and latency, pass `.zero`.
    public static let defaultPace: Duration = .milliseconds(2)

    /// Requests answered so far.
    public var completed: Int { report.withLock { $0.ok + $0.failed } }

    /// Waits until at least `count` more requests completed (bounded).
    public func waitForProgress(_ count: Int, timeout: Duration = .seconds(20)) -> Bool {
        let target = completed + count
        let deadline = monotonicNow() + timeout
        while completed < target {
            if monotonicNow() > deadline { return false }
            var pfd = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&pfd, 0, 5)
        }
        return true
    }

    /// Waits for the clients to end by themselves (maxRequests or maxDuration).
    public func finish() -> Report {
        threads.forEach { $0.join() }
        return report.withLock { $0 }
    }

    /// Stops every client and returns the report.
    public func stop() -> Report {
        stopFlag.withLock { $0 = true }
        threads.forEach { $0.join() }
        threads.removeAll()
        return report.withLock { $0 }
    }

    private func record(_ body: (inout Report) -> Void) { report.withLock { body(&$0) } }

    private func recordFailure(_ kind: String) {
        let at = monotonicNow()
        record {
            $0.failures[kind, default: 0] += 1
            if recordLatencies { $0.failureEvents.append((at, kind)) }
        }
    }

    private func clientLoop(deadline: Duration, maxRequests: Int) {
        var connection: Int32 = -1
        var reused = false
        var sent = 0
        var samples: [LatencySample] = []
        defer { if recordLatencies { record { $0.samples += samples } } }
        while !stopFlag.withLock({ $0 }), monotonicNow() < deadline, sent < maxRequests {
            if connection < 0 {
                switch Self.connect(port: port, address: address) {
                case .success(let fd):
                    connection = fd
                    reused = false
                case .failure(let error):
                    recordFailure(error.kind)
                    continue
                }
            }
            sent += 1
            let began = monotonicNow()
            let outcome = exchange(connection)
            if recordLatencies, case .ok(let pid, _, _) = outcome {
                let end = monotonicNow()
                samples.append(LatencySample(end: end, latency: end - began, pid: pid, newConnection: !reused))
            }
            if pace > .zero { pause(began + pace - monotonicNow()) }
            switch outcome {
            case .ok(let pid, let release, let keepAlive):
                record {
                    $0.ok += 1
                    $0.pids.insert(pid)
                    if !$0.releases.contains(release) { $0.releases.append(release) }
                }
                reused = true
                if !keepAlive {
                    close(connection)
                    connection = -1
                }
            case .closedBeforeResponse where reused:
                close(connection)
                connection = -1
                record { $0.idleCloseRetries += 1 }
                sent -= 1  // the retry is the same request
            case .failed(let kind), .closedBeforeResponse(let kind):
                recordFailure(kind)
                close(connection)
                connection = -1
            }
        }
        if connection >= 0 { close(connection) }
    }

    private enum Outcome {
        case ok(pid: Int32, release: String, keepAlive: Bool)
        case closedBeforeResponse(String)
        case failed(String)
    }

    private static func connect(port: UInt16, address: UInt32) -> Result<Int32, LoadError> {
        let (fd, e) = HTTP.connectLoopback(port: port, address: address)
        guard fd >= 0 else {
            return .failure(LoadError(e == ECONNREFUSED ? "refused" : e == EAGAIN || e == ETIMEDOUT || e == EINPROGRESS ? "timeout" : "connect errno \(e)"))
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return .success(fd)
    }

    // The response is parsed as bytes: the tests run this client in a debug build, where
    // splitting each response into Strings took 4.1 % of the whole test phase's CPU (perf:
    // header and field); as bytes, 1.1 % (header, field and headerEnd).
    private func exchange(_ fd: Int32) -> Outcome {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let w = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if w != request.count {
            return errno == EPIPE || errno == ECONNRESET ? .closedBeforeResponse("reset") : .failed("send errno \(errno)")
        }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let end = Self.headerEnd(data) {
                let head = data[..<end]
                let length = Self.header(head, "content-length").flatMap(Self.decimal) ?? 0
                if data.count >= end + 4 + length {
                    let body = data[(end + 4)..<(end + 4 + length)]
                    guard head.starts(with: "HTTP/1.1 2".utf8) || head.starts(with: "HTTP/1.0 2".utf8) else {
                        let line = String(decoding: head.prefix { $0 != 13 }, as: UTF8.self)
                        return .failed("status " + String(line.split(separator: " ").dropFirst().first ?? "?"))
                    }
                    let connection = Self.header(head, "connection").map { String(decoding: $0, as: UTF8.self).lowercased() }
                    return .ok(
                        pid: Self.field(body, "pid").flatMap(Self.decimal).flatMap { Int32(exactly: $0) } ?? 0,
                        release: Self.field(body, "release").map { String(decoding: $0, as: UTF8.self) } ?? "?",
                        keepAlive: connection != "close")
                }
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                data += buffer[0..<n]
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .failed("timeout") }
            let kind = n == 0 ? "closed" : errno == ECONNRESET ? "reset" : "read errno \(errno)"
            return data.isEmpty ? .closedBeforeResponse(kind) : .failed(kind + " mid-response")
        }
    }

    /// Where the blank line ending the head starts.
    private static func headerEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// The value of the header `name` (lowercase ASCII) in `head`, spaces around it trimmed.
    private static func header(_ head: ArraySlice<UInt8>, _ name: String) -> ArraySlice<UInt8>? {
        let name = Array(name.utf8)
        var start = head.startIndex
        while start < head.endIndex {
            var end = start
            while end < head.endIndex && head[end] != 13 { end += 1 }
            if end - start > name.count, head[start + name.count] == 58 /* : */ {
                var same = true
                for i in 0..<name.count {
                    let byte = head[start + i]
                    if (byte >= 65 && byte <= 90 ? byte + 32 : byte) != name[i] {  // A-Z lowered
                        same = false
                        break
                    }
                }
                if same {
                    var from = start + name.count + 1
                    var to = end
                    while from < to && head[from] == 32 { from += 1 }
                    while to > from && head[to - 1] == 32 { to -= 1 }
                    return head[from..<to]
                }
            }
            start = end + 2  // past CR LF
        }
        return nil
    }

    /// The value of the first `name=value` token of `body` (tokens end at a space or a newline).
    private static func field(_ body: ArraySlice<UInt8>, _ name: String) -> ArraySlice<UInt8>? {
        let key = Array((name + "=").utf8)
        var start = body.startIndex
        while start < body.endIndex {
            var end = start
            while end < body.endIndex && body[end] != 32 && body[end] != 10 { end += 1 }
            if body[start..<end].starts(with: key) { return body[(start + key.count)..<end] }
            start = end + 1
        }
        return nil
    }

    /// A non-negative decimal number, or nil if `digits` is empty, holds anything else or overflows.
    private static func decimal(_ digits: ArraySlice<UInt8>) -> Int? {
        guard !digits.isEmpty else { return nil }
        var value = 0
        for byte in digits {
            guard byte >= 48 && byte <= 57 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(Int(byte - 48))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }
}

/// One answered request.
public struct LatencySample: Sendable {
    /// Monotonic time it completed.
    public var end: Duration
    /// Time from sending to the complete response.
    public var latency: Duration
    /// The worker that answered.
    public var pid: Int32
    /// Whether the request was the first on its connection (connect time excluded).
    public var newConnection: Bool
}

struct LoadError: Error {
    var kind: String
    init(_ kind: String) { self.kind = kind }
}
