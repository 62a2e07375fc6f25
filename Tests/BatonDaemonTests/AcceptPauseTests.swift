@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// A listener out of descriptors stays readable: without a pause the loop called accept again
/// at once, 13,208 times in 1.5 s in an audit (`ulimit -n 40`, 30 idle control connections),
/// at 100 % of a core. Here a real listening socket with a client waiting, on a loop with a
/// manual clock, and accept failing as it would with EMFILE.
@Suite struct AcceptPauseTests {
    @Test func aListenerOutOfDescriptorsIsNotWatchedForAPauseThatDoubles() throws {
        let clock = ManualClock()
        let loop = try EventLoop(now: { clock.now })
        let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 4)
        let port = try #require(listener.address.split(separator: ":").last.flatMap { UInt16($0) })
        let client = try #require(HTTP.connect(port: port))
        defer { close(client) }
        var reports: [String] = []
        var calls = 0
        var pause: AcceptPause!
        try loop.register(fd: listener.fd, events: .readable) { _ in
            calls += 1
            pause.failed(EMFILE)  // as accept4 would fail: the client stays in the backlog
        }
        pause = AcceptPause(loop: loop, fd: listener.fd) { reports.append($0) }
        _ = loop.pump()
        #expect(calls == 1 && pause.isPaused && pause.delay == .milliseconds(50))
        #expect(reports == ["accept failed: Too many open files; not accepting for up to 1s at a time until it succeeds"])
        _ = loop.pump()
        _ = loop.pump()
        #expect(calls == 1, "not watched while paused")
        clock.set(clock.now + .milliseconds(50))
        _ = loop.pump()  // the timer watches it again
        _ = loop.pump()
        #expect(calls == 2 && pause.delay == .milliseconds(100))
        for _ in 0..<6 {
            clock.set(clock.now + pause.delay)
            _ = loop.pump()
            _ = loop.pump()
        }
        #expect(calls == 8 && pause.delay == .seconds(1), "doubles up to 1 s")
        #expect(reports.count == 1, "one line per run of failures")
        // A new run within 10 s of the last line is not logged (a CI audit: 3 lines in 190 ms
        // while descriptors came and went); one after that is.
        pause.accepted()
        pause.failed(ENFILE)
        #expect(pause.delay == .milliseconds(50) && reports.count == 1)
        clock.set(clock.now + AcceptPause.reportSpacing)
        pause.accepted()
        pause.failed(ENFILE)
        #expect(reports.count == 2)
        #expect(pause.failed(ECONNABORTED) == false, "not about resources: accepting goes on")
        pause.cancel()
        loop.unregister(fd: listener.fd)
    }
}
