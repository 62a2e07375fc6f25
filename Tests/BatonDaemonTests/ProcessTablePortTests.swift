import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// The supervisor's reads of the process table go through the port: the notify sender check,
/// the liveness check and the take-over check run here on a table the test writes, with no
/// process behind it.
@Suite struct ProcessTablePortTests {
    /// Sends `text` as one datagram to `path` from this (test) process: the kernel attaches its
    /// pid as the sender's credentials.
    static func notify(_ path: String, _ text: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(Sockets.connectUnix(fd, path) == 0, "connect \(path): \(errno)")
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == bytes.count)
    }

    @Test func aNotifyMessageCountsOnlyFromAProcessTheTableSaysIsInTheWorkersTree() throws {
        let h = try DaemonHarness(workers: 1)
        h.autoReady = { _ in false }
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        let path = try #require(h.host.child(worker.pid)?.environment("NOTIFY_SOCKET"))
        // This test process, alive, is not in the fake worker's tree: its READY=1 is ignored.
        // (One gone already counts: `SupervisorNotifyTests.aReadyFromAChildGoneAlreadyCounts`.)
        h.host.fakeProcesses.setStartTime(42, of: getpid())
        try Self.notify(path, "READY=1")
        h.advance(by: .zero)
        #expect(worker.state == .starting)
        // Once the table says it is a member of the tree, the same message counts.
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        try Self.notify(path, "READY=1")
        h.advance(by: .zero)
        #expect(worker.state == .ready)
    }

    /// An audit of misbehaving workers: a worker tree sending notify messages in a loop held
    /// baton's loop (every message was read until EAGAIN, and the senders refilled the socket
    /// meanwhile), and each bad message was its own WARN line (110,960 in 6 s). One wakeup now
    /// reads a bounded number of messages of one socket (64; 4 here, as a socket queues only
    /// 10 before its senders block), and a worker gets at most one notify warning per 10 s.
    @Test func aWakeupReadsABoundedNumberOfNotifyMessagesAndWarningsAreThrottled() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.supervisor.notifyMessagesPerWakeup = 4
        let worker = try #require(h.supervisor.slots[0].current)
        let path = try #require(h.host.child(worker.pid)?.environment("NOTIFY_SOCKET"))
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        for n in 1...8 { try Self.notify(path, "STATUS=\(n)") }
        _ = h.loop.pump()
        #expect(worker.statusText == "4")
        h.advance(by: .zero)
        #expect(worker.statusText == "8")
        for _ in 1...6 {
            for _ in 1...8 { try Self.notify(path, "X_BATON_REQUESTS=abc") }
            h.advance(by: .zero)
        }
        #expect(worker.notifyWarnings.held == 47)
        h.advance(by: .seconds(10))
        try Self.notify(path, "X_BATON_REQUESTS=-1")
        h.advance(by: .zero)
        #expect(worker.notifyWarnings.held == 0)
    }

    /// An apps audit: `X_BATON_REQUESTS=18446744073709551615` was ignored as "not a
    /// non-negative integer", which it is: too large is what it is.
    @Test func aRequestCountTooLargeIsSaidSo() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current)
        let path = try #require(h.host.child(worker.pid)?.environment("NOTIFY_SOCKET"))
        h.host.fakeProcesses.add([getpid()], to: worker.pid)
        try Self.notify(path, "X_BATON_REQUESTS=18446744073709551615")
        h.advance(by: .zero)
        #expect(worker.requestsServed == nil)
        let said = h.log.lines(containing: "X_BATON_REQUESTS=")
        #expect(said.count == 1 && said[0].contains("ignored: too large (over 9223372036854775807)"), "\(said)")
    }

    @Test func aWorkerWhoseTreeTheTableShowsStoppedIsReplacedForLiveness() throws {
        let h = try DaemonHarness(workers: 2) { $0.readiness.stoppedTimeout = .seconds(4) }
        try h.start()
        h.supervisor.startLivenessChecks()
        let slot = h.supervisor.slots[1]
        let stopped = try #require(slot.current)
        h.host.fakeProcesses.add([stopped.pid + 100_000], to: stopped.pid)
        h.host.fakeProcesses.setState("T", of: stopped.pid + 100_000)
        h.advance(by: .seconds(10))
        #expect(stopped.state == .exited)
        #expect(slot.lastRestartReason == RestartCause(.liveness))
        #expect(h.supervisor.slots[0].restarts == 0, "the running tree is left alone")
        #expect(h.supervisor.restartsByReason[.liveness] == 1)
    }

    @Test func aPreviousBatonIsRunningExactlyWhenTheTableHasItsPidWithTheRecordedStartTime() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let previous = InstanceRecord(app: "fake", pid: 4_242_424, startTime: 7, listeners: [], workers: [])
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        // Not in the table: that baton is gone; its record is remembered for the take-over.
        try h.supervisor.checkPreviousInstance()
        #expect(h.supervisor.takeOver.previous?.pid == previous.pid)
        // Same pid, another start time: a reused pid, not that baton.
        h.host.fakeProcesses.setStartTime(8, of: previous.pid)
        try h.supervisor.checkPreviousInstance()
        // The same process: refused.
        h.host.fakeProcesses.setStartTime(7, of: previous.pid)
        #expect(throws: InstanceConflict.self) { try h.supervisor.checkPreviousInstance() }
    }

    /// A day-2 audit: an app whose config shared another app's runtime directory, started after
    /// that app's baton was killed, took over and drained its orphaned workers (that app went
    /// down). Refused while any of them runs; a record whose workers are all gone is ignored.
    @Test func anotherAppsRecordIsNeverTakenOver() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let previous = InstanceRecord(
            app: "appa", pid: 4_242_424, startTime: 7, listeners: [], workers: [.init(slot: 0, pid: 4_242_425, startTime: 9)])
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        h.host.fakeProcesses.setStartTime(9, of: 4_242_425)
        let error = #expect(throws: InstanceConflict.self) { try h.supervisor.checkPreviousInstance() }
        #expect(
            error?.description.contains(
                "holds the record of app appa, whose baton (pid 4242424) is gone and whose workers 4242425 still run: this config is app fake")
                == true, "\(String(describing: error))")
        #expect(h.supervisor.takeOver.previous == nil)
        h.host.fakeProcesses.setStartTime(10, of: 4_242_425)  // gone (its pid reused)
        try h.supervisor.checkPreviousInstance()
        #expect(h.supervisor.takeOver.previous == nil, "nothing of it is taken over")
    }
}
