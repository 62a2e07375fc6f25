import BatonCore
@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// What the metrics listener answers to requests a scraper would not send, and how many
/// connections it lets wait (a metrics audit, left from stop 45).
@Suite("metrics requests")
struct MetricsRequestTests {
    /// The status `request` gets, answered on the harness's loop.
    static func status(of request: String, _ server: MetricsServer, _ h: DaemonHarness) throws -> Int? {
        let port = try #require(UInt16(server.address.split(separator: ":").last ?? ""))
        let fd = try #require(HTTP.connect(port: port))
        defer { close(fd) }
        HTTP.send(fd, request)
        h.settle()
        return HTTP.readResponse(fd)?.status
    }

    /// `GET /metrics HTTP/` and a bare CR were taken; a method HTTP has but baton does not know
    /// (`M-SEARCH`) got 400, where HTTP answers 501; a version other than 1.x is 505.
    @Test func requestLinesHTTPRefuses() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let server = try MetricsServer(address: .tcp(host: "127.0.0.1", port: 0), loop: h.loop, source: h.supervisor)
        for (request, expected) in [
            ("GET /metrics HTTP/1.1\r\n\r\n", 200), ("GET /metrics HTTP/1.0\n\n", 200),
            ("GET /metrics HTTP/\r\n\r\n", 400), ("GET /metrics HTTP/1.1\rjunk\r\n\r\n", 400), ("GET /met\rrics HTTP/1.1\r\n\r\n", 400),
            ("GET /metrics HTTPS/1.1\r\n\r\n", 400), ("GET /metrics HTTP/1.1x\r\n\r\n", 400),
            ("M-SEARCH * HTTP/1.1\r\n\r\n", 501), ("BREW /metrics HTTP/1.1\r\n\r\n", 501), ("POST /metrics HTTP/1.1\r\n\r\n", 405),
            ("OPTIONS * HTTP/1.1\r\n\r\n", 405), ("GET /metrics HTTP/2.0\r\n\r\n", 505),
        ] {
            #expect(try Self.status(of: request, server, h) == expected, "\(request.debugDescription)")
        }
    }

    /// A metrics audit: 131 of 1,000 simultaneous connects were still unanswered after 20 s; the
    /// listen backlog was 64, so the kernel dropped the other SYNs and the clients waited for
    /// their retransmits. 200 connects made while the loop is busy all complete now.
    @Test func manyConnectsWaitInTheBacklog() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let server = try MetricsServer(address: .tcp(host: "127.0.0.1", port: 0), loop: h.loop, source: h.supervisor)
        let port = try #require(UInt16(server.address.split(separator: ":").last ?? ""))
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            try #require(fd >= 0)
            fds.append(fd)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let r = withUnsafePointer(to: &sa) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try #require(r == 0 || errno == EINPROGRESS)
        }
        // Loopback handshakes complete within the connect; with the loop not accepting, a SYN
        // the full backlog dropped stays dropped at its retransmits.
        var polls = fds.map { pollfd(fd: $0, events: Int16(POLLOUT), revents: 0) }
        var established = 0
        let deadline = ContinuousClock.now + .seconds(5)
        repeat {
            for i in polls.indices { polls[i].revents = 0 }
            _ = poll(&polls, nfds_t(polls.count), 50)
            established = polls.filter { $0.revents & Int16(POLLOUT) != 0 }.count
        } while established < fds.count && ContinuousClock.now < deadline
        #expect(established == fds.count)
        h.settle()
        _ = server
    }

    /// A multi-app audit: a `[metrics] address` another app had taken ended the start with
    /// `bind 127.0.0.1:18511: Address already in use`, which reads as a listen address's.
    @Test func aMetricsAddressInUseIsNamedWithItsKey() throws {
        let taken = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 1)
        defer { withExtendedLifetime(taken) {} }
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.metrics.address = taken.address
        let error = #expect(throws: DaemonError.self) { try h.supervisor.startMetrics() }
        #expect(h.host.children.isEmpty)
        #expect(error?.description.hasPrefix("[metrics] address: bind \(taken.address): Address already in use") == true, "\(String(describing: error))")
    }
}
