import BatonCore
@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// A starved audit, `LimitNOFILE=64`: 64 idle control connections (the documented room) left a
/// crashed worker's slot empty for 15 s (`Too many open files` at each start), 40 metrics
/// connections of any local user for 31 s, and a replace step ended DEGRADED: the descriptors
/// its drain gave back went to new clients first. A client is refused once fewer descriptors
/// than one worker's start needs would stay free: root's too, and scrapes get a 503.
@Suite struct ClientDescriptorReserveTests {
    @Test func clientsLeaveTheDescriptorsAStartNeeds() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        try h.start()
        let control = try h.supervisor.openControlServer()
        h.supervisor.control = control
        defer { control.close() }
        let logger = h.supervisor.logger
        let metrics = try MetricsServer(address: .tcp(host: "127.0.0.1", port: 0), loop: h.loop, source: h.supervisor) { logger.error("metrics: \($0)") }
        let need = DescriptorRoom.perStart + h.supervisor.listeners.count
        // The client just accepted is among the open ones: with it, `need` stay free.
        nonisolated(unsafe) var open = 64 - need
        h.host.descriptors = { (open, 64) }
        let answered = try SupervisorControlSocketTests.ask(#"{"v":1,"cmd":"status"}"#, at: control.path, h)
        #expect(answered.contains(#""state":"running""#), "\(answered)")
        #expect(try MetricsRequestTests.status(of: "GET /metrics HTTP/1.1\r\n\r\n", metrics, h) == 200)
        // One more open: the client would take one of them.
        open += 1
        let refused = try SupervisorControlSocketTests.ask(#"{"v":1,"cmd":"status"}"#, at: control.path, h)
        #expect(refused.contains("baton keeps its last \(need) descriptors to start workers (\(open) of 64 descriptors open); try again later"), "\(refused)")
        #expect(refused.contains(#""code":3"#), "\(refused)")
        #expect(try MetricsRequestTests.status(of: "GET /metrics HTTP/1.1\r\n\r\n", metrics, h) == 503)
        #expect(h.log.lines(containing: "scrape refused: baton keeps its last").count == 1, "\(h.log.lines)")
        // Unknown (no /proc, no limit): not refused.
        h.host.descriptors = nil
        #expect(try SupervisorControlSocketTests.ask(#"{"v":1,"cmd":"status"}"#, at: control.path, h).contains(#""state":"running""#))
    }
}
