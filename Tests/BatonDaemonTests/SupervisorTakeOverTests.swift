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

    /// A real listening socket standing for the dead baton's, and a harness whose runtime
    /// directory holds that baton's record: its socket with `inode`, `workers` and `molds`.
    func deadBaton(inode: UInt64, workers: [InstanceRecord.WorkerRecord] = [], molds: [InstanceRecord.WorkerRecord]? = nil) throws -> (
        h: DaemonHarness, socket: Listener, address: String
    ) {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        let address = try #require(Sockets.localAddress(socket.fd))
        let h = try DaemonHarness(workers: 1)
        h.supervisor.runtimeDirectory = h.root + "/run"
        var previous = InstanceRecord(
            app: "fake", pid: Self.previousPID, startTime: 10, listeners: [.init(name: "http", address: address, inode: inode)], workers: workers)
        previous.molds = molds
        h.host.fakeFiles[h.supervisor.instancePath] = String(decoding: try JSONEncoder().encode(previous), as: UTF8.self)
        return (h, socket, address)
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

    /// A drain audit (2 of 2): while a take-over's orphans drained 20 s requests, `status`
    /// listed only the new workers, `preflight` said "fits" and a deploy planned a surge of 2
    /// beside them: the workers' PSS reached 174 MiB of a 150 MiB budget. The orphans are
    /// measured with the workers, shown by `status` and counted against the budget.
    @Test func theOrphansMemoryCountsUntilTheyAreGone() throws {
        let mib: UInt64 = 1 << 20
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o660, backlog: 16)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let h = try harness(address: try #require(Sockets.localAddress(socket.fd)))
        h.host.fakeMemory.worker = MemorySample(rss: 30 * mib, pss: 20 * mib, uss: 15 * mib)
        h.host.fakeMemory.host = MemoryReadings(
            host: HostMemoryInfo(total: 8192 * mib, available: 4096 * mib, commitLimit: 8192 * mib, committed: 1024 * mib), overcommit: .heuristic,
            cgroup: nil)
        let orphan = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd])
        orphan.ignoresStopSignal = true
        h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        h.supervisor.takeOver.taken = [:]
        try h.start()
        h.supervisor.drainOrphans()
        let (_, report) = try h.preflight()
        #expect(report.workersPSSBytes == 40 * mib, "the new worker and the orphan, 20 MiB each")
        let status = h.supervisor.statusReport(memory: h.supervisor.lastMemorySamples)
        let row = try #require(status.workers.first { $0.pid == Self.orphanPID }, "\(status.workers)")
        #expect(row.state == "orphaned-draining" && row.pssBytes == 20 * mib && row.release == "previous baton pid \(Self.previousPID)")
        #expect(status.memory?.workersPSSBytes == 40 * mib)
        orphan.end(.exited(0))
        h.advance(by: .zero)
        #expect(try h.preflight().1.workersPSSBytes == 20 * mib, "gone: only the new worker")
    }

    /// Workers the dead baton spawned but had not recorded hold its listening socket (the
    /// recorded inode): each that leads its own group and started after that baton is adopted,
    /// and gives up the socket when no recorded orphan could; a holder inside a recorded
    /// orphan's tree, one that is not a group leader, and one older than that baton are not.
    @Test(arguments: [true, false])
    func unrecordedHoldersOfTheSocketAreAdopted(recordedOrphan: Bool) throws {
        let inode: UInt64 = 7_777
        let (h, socket, address) = try deadBaton(inode: inode, workers: recordedOrphan ? [.init(slot: 0, pid: Self.orphanPID, startTime: 11)] : [])
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let (stray, child, notLeader, older) = (Self.orphanPID + 1, Self.orphanPID + 2, Self.orphanPID + 3, Self.orphanPID + 4)
        if recordedOrphan {
            _ = h.host.addOrphan(pid: Self.orphanPID, slot: 0, descriptors: [3: socket.fd])
            h.host.fakeProcesses.setStartTime(11, of: Self.orphanPID)
            h.host.fakeProcesses.add([child], to: Self.orphanPID)
        }
        for pid in [stray, child, notLeader, older] {
            _ = h.host.addOrphan(pid: pid, slot: 0, descriptors: [3: socket.fd])
            h.host.fakeProcesses.setStartTime(pid == older ? 9 : 12, of: pid)
            h.host.fakeProcesses.setProcessGroup(pid == notLeader ? stray : pid, of: pid)
        }
        let holders = recordedOrphan ? [Self.orphanPID, stray, child, notLeader, older, getpid()] : [stray, notLeader, older, getpid()]
        h.host.fakeProcesses.setSocketHolders(holders, inode: inode)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        #expect(h.supervisor.takeOver.orphans.map(\.pid) == (recordedOrphan ? [Self.orphanPID, stray] : [stray]))
        #expect(h.supervisor.takeOver.orphans.last?.slot == -1)
        let taken = try #require(h.supervisor.takeOver.taken["http"], "taken from an orphan's fd 3")
        #expect(taken.address == address)
        h.supervisor.takeOver.taken = [:]
    }

    /// Found by a crash audit: a worker's `setsid sleep` holding the dead baton's socket was
    /// adopted as an unrecorded worker (8 of them counted as orphans, and the take-over's pace
    /// let every new worker start at 95 % of a cgroup); one left out of this baton's own record
    /// (a worker of no known slot) served for good after this baton was killed in turn.
    @Test func aHolderThatLeadsASessionIsAStrayAndEveryOrphanIsRecorded() throws {
        let inode: UInt64 = 8_888
        let (h, socket, _) = try deadBaton(inode: inode)
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let (unrecorded, escapee) = (Self.orphanPID + 1, Self.orphanPID + 2)
        let escapeeChild = h.host.addOrphan(pid: escapee, slot: 0, descriptors: [3: socket.fd])
        _ = h.host.addOrphan(pid: unrecorded, slot: 0, descriptors: [3: socket.fd])
        for pid in [unrecorded, escapee] {
            h.host.fakeProcesses.setStartTime(12, of: pid)
            h.host.fakeProcesses.setProcessGroup(pid, of: pid)
        }
        h.host.fakeProcesses.setSession(escapee, of: escapee)
        h.host.fakeProcesses.setSocketHolders([unrecorded, escapee, getpid()], inode: inode)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        #expect(h.supervisor.takeOver.orphans.map(\.pid) == [unrecorded])
        #expect(h.supervisor.takeOver.strays.map(\.process.pid) == [escapee])
        h.supervisor.takeOver.taken = [:]
        h.supervisor.writeInstanceRecord()
        let record = try JSONDecoder().decode(InstanceRecord.self, from: Data(try #require(h.host.fakeFiles[h.supervisor.instancePath]).utf8))
        #expect(record.workers.map(\.pid) == [unrecorded] && record.workers.first?.slot == -1 && record.workers.first?.startTime == 12)
        #expect(record.strays?.map(\.pid) == [escapee])
        // At the end of a stop the stray goes too.
        h.supervisor.beginShutdown()
        h.advance(by: .seconds(60))
        #expect(escapeeChild.signals.contains(SIGKILL), "\(escapeeChild.signals)")
    }

    /// A mold audit: a mold still loading when baton was killed (a ready one exits at the end of
    /// its channel) was taken over as an orphaned worker of no slot. The record names the molds
    /// now, and the next baton kills one still running instead.
    @Test func aMoldOfTheDeadBatonIsStoppedNotTakenOverAsAWorker() throws {
        let inode: UInt64 = 9_999
        let mold = Self.orphanPID + 5
        let (h, socket, _) = try deadBaton(inode: inode, molds: [.init(slot: -1, pid: mold, startTime: 12)])
        defer { withExtendedLifetime(socket) {} }  // the Listener owns its socket and closes it
        let child = h.host.addOrphan(pid: mold, slot: 0, descriptors: [3: socket.fd])
        h.host.fakeProcesses.setStartTime(12, of: mold)
        h.host.fakeProcesses.setProcessGroup(mold, of: mold)
        h.host.fakeProcesses.setSocketHolders([mold, getpid()], inode: inode)
        try h.supervisor.checkPreviousInstance()
        h.supervisor.adoptOrphans()
        #expect(h.supervisor.takeOver.orphans.isEmpty && h.supervisor.takeOver.strays.isEmpty)
        #expect(child.signals.contains(SIGKILL), "\(child.signals)")
    }

    /// A mold a baton starts is in its record from then on.
    @Test func theRecordNamesTheMolds() throws {
        let h = try DaemonHarness(workers: 1) { $0.app.mode = .mold }
        h.supervisor.runtimeDirectory = h.root + "/run"
        try h.start()
        let mold = try #require(h.host.molds.first)
        h.host.fakeProcesses.setStartTime(20, of: mold.pid)
        h.supervisor.writeInstanceRecord()
        let record = try JSONDecoder().decode(InstanceRecord.self, from: Data(try #require(h.host.fakeFiles[h.supervisor.instancePath]).utf8))
        #expect(record.molds?.map(\.pid) == [mold.pid] && record.molds?.first?.startTime == 20)
    }

    /// The record names the inode of each listening socket, from the first write on.
    @Test func theRecordNamesEachListeningSocketsInode() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.runtimeDirectory = h.root + "/run"
        h.supervisor.writeInstanceRecord()
        let record = try JSONDecoder().decode(InstanceRecord.self, from: Data(try #require(h.host.fakeFiles[h.supervisor.instancePath]).utf8))
        #expect(record.listeners.count == h.supervisor.listeners.count)
        for (recorded, listener) in zip(record.listeners, h.supervisor.listeners) {
            #expect(recorded.inode != nil && recorded.inode == Supervisor.inode(of: listener.fd))
        }
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
