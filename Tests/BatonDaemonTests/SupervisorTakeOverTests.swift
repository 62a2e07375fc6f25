import BatonCore
@testable import BatonDaemon
import BatonSystem
import CBatonLinux
import Foundation
import Glibc
import Testing

/// Take-over of a crashed baton's workers through the port: their pidfds opened, their
/// listening sockets taken, their drain signalled, on fake orphans (a real socket stands for
/// the one they hold; no process).
@Suite struct SupervisorTakeOverTests {
    static let previousPID: pid_t = 4_500_000
    static let orphanPID: pid_t = 4_500_001

    /// A harness whose runtime directory holds the record of a dead baton with one worker
    /// (start time 11) listening on `address`, holding a reader of its output at `outputFD`.
    func harness(address: String, outputFD: Int32? = nil) throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.runtimeDirectory = h.root + "/run"
        let previous = InstanceRecord(
            app: "fake", pid: Self.previousPID, startTime: 10, listeners: [.init(name: "http", address: address)],
            workers: [.init(slot: 0, pid: Self.orphanPID, startTime: 11, outputFD: outputFD)])
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        return h
    }

    @Test func theOrphansOfADeadBatonGiveUpTheirSocketAndAreDrained() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let address = try #require(Sockets.localAddress(socket.fd))
        let h = try harness(address: address)
        let orphan = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd])
        h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        #expect(h.supervisor.takeOver.orphans.map(\.pid) == [Self.orphanPID])
        let taken = try #require(h.supervisor.takeOver.taken["http"], "its fd 3 checked as a socket listening on \(address)")
        #expect(taken.address == address && taken.fd != socket.fd)
        h.supervisor.takeOver.taken = [:]  // closes it: the Listener owns its socket

        h.supervisor.drainOrphans()
        #expect(orphan.signals == [SIGTERM], "the stop signal through its pidfd")
        h.advance(by: .zero)
        #expect(h.supervisor.takeOver.orphans.isEmpty, "gone once its pidfd turned readable")
    }

    /// An orphan whose pidfd the loop cannot watch (epoll refuses it) still leaves the take-over
    /// once it exited, found by a poll: a shutdown waits for every orphan to be gone, and would
    /// have waited for good. (The fake's unwatchable pidfd, /dev/null, polls as exited at once.)
    @Test func anOrphanTheLoopCannotWatchIsFoundGoneByAPoll() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let h = try harness(address: try #require(Sockets.localAddress(socket.fd)))
        _ = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd], watchable: false)
        h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        #expect(h.supervisor.takeOver.orphans.map(\.pid) == [Self.orphanPID])
        h.supervisor.takeOver.taken = [:]
        h.supervisor.drainOrphans()
        h.advance(by: .seconds(1))
        #expect(h.supervisor.takeOver.orphans.isEmpty, "found gone by the poll")
    }

    /// An orphan's process group is signalled only while the orphan still leads it: once the
    /// leader is gone, its number may name another group (the process table says; before, a
    /// getpgid(2) outside the port that the fake could not answer).
    @Test(arguments: [true, false])
    func anOrphansGroupIsSignalledOnlyWhileItLeadsIt(leads: Bool) throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let h = try harness(address: try #require(Sockets.localAddress(socket.fd)))
        let orphan = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd])
        h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
        h.host.fakeProcesses.setProcessGroup(leads ? Self.orphanPID : Self.previousPID, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        h.supervisor.takeOver.taken = [:]  // closes them: each Listener owns its socket

        h.supervisor.drainOrphans()
        let groups = h.host.groupSignals.map { [$0.group, $0.signal] }
        #expect(groups == (leads ? [[Self.orphanPID, SIGTERM]] : []))
        #expect(orphan.signals.last == SIGTERM, "its pidfd is signalled either way")
        h.advance(by: .zero)
        #expect(h.supervisor.takeOver.orphans.isEmpty)
    }

    /// An orphan's record owns what was taken from it as a worker's does (``ProcessChannels``):
    /// the reader of its output pipe is relayed while it drains and closed once it is gone, so
    /// no descriptor of that pipe is left in baton.
    @Test func anOrphansOutputReaderIsClosedOnceItIsDrained() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        var output: [Int32] = [-1, -1]
        try #require(CBatonLinux_pipe_cloexec(&output) == 0)
        defer { output.forEach { close($0) } }
        let h = try harness(address: try #require(Sockets.localAddress(socket.fd)), outputFD: WorkerContract.outputReaderFD)
        let orphan = h.host.addOrphan(
            pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd, WorkerContract.outputReaderFD: output[0]])
        h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        h.supervisor.takeOver.taken = [:]  // closes them: each Listener owns its socket
        let adopted = try #require(h.supervisor.takeOver.orphans.first)
        #expect(adopted.outputFD >= 0 && adopted.pidfd == orphan.pidfd)
        #expect(descriptors(onThePipeOf: output[1]) == 3, "the test's two ends and baton's reader")

        h.supervisor.drainOrphans()
        h.advance(by: .zero)
        #expect(h.supervisor.takeOver.orphans.isEmpty)
        #expect(adopted.outputFD == -1 && adopted.pidfd == -1)
        #expect(descriptors(onThePipeOf: output[1]) == 2, "baton's reader is closed")
    }

    /// What is taken from an orphan is owned from the take: a descriptor that fails its check
    /// (fd 3 not a listening socket, the output fd not a pipe's read end) is closed at once.
    @Test func aTakenDescriptorThatFailsItsCheckIsClosed() throws {
        var pipe: [Int32] = [-1, -1]
        try #require(CBatonLinux_pipe_cloexec(&pipe) == 0)
        defer { pipe.forEach { close($0) } }
        let h = try harness(address: "127.0.0.1:1", outputFD: WorkerContract.outputReaderFD)
        _ = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: pipe[0], WorkerContract.outputReaderFD: pipe[1]])
        h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        let adopted = try #require(h.supervisor.takeOver.orphans.first)
        #expect(h.supervisor.takeOver.taken.isEmpty, "a pipe is not the socket listening on the recorded address")
        #expect(adopted.outputFD == -1, "a pipe's write end is not relayed")
        #expect(descriptors(onThePipeOf: pipe[0]) == 2, "only the test's two ends: both taken copies are closed")
        h.supervisor.drainOrphans()
        h.advance(by: .zero)
        #expect(h.supervisor.takeOver.orphans.isEmpty)
    }

    @Test func aPidReusedSinceTheRecordIsNeitherAdoptedNorRobbed() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let h = try harness(address: try #require(Sockets.localAddress(socket.fd)))
        let stranger = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd])
        h.host.fakeProcesses.setStartTime(12, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        #expect(h.supervisor.takeOver.orphans.isEmpty && h.supervisor.takeOver.taken.isEmpty)
        h.supervisor.drainOrphans()
        #expect(stranger.signals.isEmpty && stranger.isRunning)
        close(stranger.pidfd)
    }
}
