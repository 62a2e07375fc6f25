import BatonCore
@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// A metrics audit: 8 threads scraping `/metrics` in a loop kept the metrics listener's accept
/// loop going for the whole flood, so nothing else on the event loop ran: `baton status` timed
/// out after 10 s and a worker killed meanwhile was seen 9 s late. Each wakeup of a listener
/// now takes at most `AcceptPause.perWakeup` connections; the loop comes back for the rest.
@Suite("accept fairness")
struct AcceptFairnessTests {
    /// Connections to `port` that each sent a whole scrape.
    static func scrapes(_ count: Int, port: UInt16) throws -> [Int32] {
        try (0..<count).map { _ in
            let fd = try #require(HTTP.connect(port: port))
            HTTP.send(fd, "GET /metrics HTTP/1.0\r\n\r\n")
            return fd
        }
    }

    /// How many of `clients` have an answer waiting.
    static func answered(_ clients: [Int32]) -> Int {
        clients.filter { fd in
            var byte: UInt8 = 0
            return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
        }.count
    }

    @Test("40 scrapes waiting: one turn of the loop answers at most 16, the next turns the rest")
    func metricsListenerYieldsToTheLoop() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let server = try MetricsServer(address: .tcp(host: "127.0.0.1", port: 0), loop: h.loop, source: h.supervisor)
        let port = try #require(UInt16(server.address.split(separator: ":").last ?? ""))
        let clients = try Self.scrapes(40, port: port)
        defer { clients.forEach { close($0) } }
        // Every connection is in the accept queue: wait until the listener says so.
        var ready = pollfd(fd: server.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&ready, 1, 10_000) == 1)
        #expect(h.loop.pump() != nil)
        #expect(Self.answered(clients) == 16)
        for _ in 0..<10 where Self.answered(clients) < clients.count { h.loop.pump() }
        #expect(Self.answered(clients) == clients.count)
    }
}
