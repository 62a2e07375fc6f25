import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// The control socket's groups come from the port's accounts: `[control] group` owns the
/// socket, and a group that does not exist fails the start with its name. A socket file
/// removed from under a running baton is bound again; another file put there is left alone.
@Suite struct SupervisorControlSocketTests {
    @Test func theControlGroupIsLookedUpThroughThePort() throws {
        let h = try DaemonHarness(workers: 1)
        h.host.groups = ["batonctl": 4242, "batonread": 4343]
        h.supervisor.config.control.socket = h.root + "/control.sock"
        h.supervisor.config.control.group = "batonctl"
        h.supervisor.config.control.readGroup = "batonread"
        let server = try h.supervisor.openControlServer()
        defer { server.close() }
        #expect(server.groupID == 4242 && server.readGroupID == 4343)
        var info = stat()
        #expect(stat(server.path, &info) == 0 && info.st_gid == 4242, "the socket belongs to [control] group")
        // A docs audit: read_group members could not connect to the 0660 socket (exit 3,
        // "Permission denied"): with a read group it is 0666, peers checked at connect.
        #expect(info.st_mode & 0o777 == 0o666)
        unlink(server.path)
        server.checkPath()
        #expect(stat(server.path, &info) == 0 && info.st_mode & 0o777 == 0o666, "bound again the same way")
    }

    /// A sockets audit: after `baton upgrade` to an image that opens the socket to a read_group,
    /// the adopted socket stayed 0660 and the group's members got "Permission denied" (exit 3)
    /// until a restart. The image that adopts it gives it its own mode and group.
    @Test func anAdoptedSocketGetsTheModeAndGroupOfTheImageThatAdoptsIt() throws {
        let h = try DaemonHarness(workers: 1)
        h.host.groups = ["batonctl": 4242, "batonread": 4343]
        let path = h.root + "/control.sock"
        let fd = try Sockets.bindUnix(path: path, type: Int32(SOCK_STREAM.rawValue), mode: 0o660)
        #expect(listen(fd, 8) == 0)
        h.supervisor.config.control.socket = path
        h.supervisor.config.control.group = "batonctl"
        h.supervisor.config.control.readGroup = "batonread"
        let server = try h.supervisor.openControlServer(adopting: fd)
        defer { server.close() }
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o666 && info.st_gid == 4242, "mode \(String(info.st_mode & 0o777, radix: 8))")
    }

    @Test func anUnknownControlGroupFailsWithItsNameAndBindsNothing() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        h.supervisor.config.control.readGroup = "nosuchgroup"
        let error = #expect(throws: SpawnError.self) { try h.supervisor.openControlServer() }
        #expect("\(error.map { "\($0)" } ?? "")".contains("unknown group \"nosuchgroup\""))
        #expect(access(h.root + "/control.sock", F_OK) != 0)
    }

    /// A careless-operator case: `rm /run/baton/app/control.sock` (or a tmpfiles clean-up) left
    /// every CLI command unable to reach the running baton until it restarted.
    @Test func aRemovedSocketFileIsBoundAgain() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        let server = try h.supervisor.openControlServer()
        defer { server.close() }
        #expect(Sockets.unixSocketAnswers(server.path))
        unlink(server.path)
        #expect(!Sockets.unixSocketAnswers(server.path))
        server.checkPath()
        #expect(Sockets.unixSocketAnswers(server.path), "bound again at the next check")
        var info = stat()
        #expect(stat(server.path, &info) == 0 && info.st_mode & 0o777 == 0o660)
        // And the new socket is served: a ping gets its reply.
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        #expect(Sockets.connectUnix(client, server.path) == 0)
        let request = Array(#"{"v":1,"cmd":"ping"}"#.utf8) + [10]
        #expect(write(client, request, request.count) == request.count)
        h.settle()
        var reply = [UInt8](repeating: 0, count: 256)
        let n = recv(client, &reply, reply.count, Int32(MSG_DONTWAIT))
        #expect(n > 0 && String(decoding: reply.prefix(max(n, 0)), as: UTF8.self).contains("pong"))
    }

    @Test func anotherFileAtThePathIsLeftAloneAndTheFolderIsNotMadeAgain() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/ctl/control.sock"
        mkdir(h.root + "/ctl", 0o755)
        let server = try h.supervisor.openControlServer()
        unlink(server.path)
        let other = open(server.path, O_CREAT | O_WRONLY, 0o600)
        close(other)
        server.checkPath()
        server.checkPath()
        var info = stat()
        #expect(lstat(server.path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG, "another file stays")
        server.close()
        #expect(lstat(server.path, &info) == 0, "and outlives baton's close")
        // A folder removed is not made again.
        unlink(server.path)
        let again = try h.supervisor.openControlServer()
        defer { again.close() }
        unlink(again.path)
        rmdir(h.root + "/ctl")
        again.checkPath()
        #expect(access(h.root + "/ctl", F_OK) != 0)
    }
}

extension SupervisorControlSocketTests {
    /// The reply to one request line on a new connection to `path`, once the loop ran.
    static func ask(_ request: String, at path: String, _ h: DaemonHarness) throws -> String {
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        try #require(Sockets.connectUnix(client, path) == 0)
        let bytes = Array(request.utf8) + [10]
        #expect(write(client, bytes, bytes.count) == bytes.count)
        h.settle()
        var reply = [UInt8](repeating: 0, count: 1 << 16)
        let n = recv(client, &reply, reply.count, Int32(MSG_DONTWAIT))
        return String(decoding: reply.prefix(max(n, 0)), as: UTF8.self)
    }

    /// A metrics audit: the control socket closed as soon as a stop began, so while workers
    /// drained `baton status` said "cannot reach the daemon" (exit 3), as for a dead baton.
    @Test func aStoppingBatonAnswersStatusUntilItsStopEnds() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        try h.start()
        let server = try h.supervisor.openControlServer()
        h.supervisor.control = server
        let worker = try #require(h.supervisor.slots[0].current)
        h.host.child(worker.pid)?.ignoresStopSignal = true
        h.supervisor.beginShutdown()
        h.settle()
        let status = try Self.ask(#"{"v":1,"cmd":"status"}"#, at: server.path, h)
        #expect(status.contains(#""state":"stopping""#), "\(status)")
        let deploy = try Self.ask(#"{"v":1,"cmd":"deploy","release":"\#(h.makeRelease("r1"))"}"#, at: server.path, h)
        #expect(deploy.contains("baton is stopping"), "\(deploy)")
        // (A re-audit: "upgrade refused: a stopping is in progress".)
        let upgrade = try Self.ask(#"{"v":1,"cmd":"upgrade"}"#, at: server.path, h)
        #expect(upgrade.contains("upgrade refused: baton is stopping; nothing changed"), "\(upgrade)")
        // In the log too (a day-2 audit: refusals for the config or a running operation were not).
        #expect(h.log.lines(containing: "upgrade refused: baton is stopping; nothing changed").count == 1, "\(h.log.lines)")
        h.host.child(worker.pid)?.end(.exited(0))
        h.settle()
        #expect(!Sockets.unixSocketAnswers(server.path))
        #expect(access(server.path, F_OK) != 0, "the socket file goes when the stop ends")
    }

    /// A CI audit: 71 root CI jobs waiting behind a deploy held every connection, and the
    /// operator's `baton status` exited 3 (`too many control connections (72 open)`). Clients
    /// following operations take at most `maxFollowers`; the rest is left to short requests.
    @Test func followersLeaveRoomForTheOperator() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        try h.start()
        let server = try h.supervisor.openControlServer()
        h.supervisor.control = server
        h.autoReady = { _ in false }  // the deploy hangs in readiness
        let running = try Self.ask(#"{"v":1,"cmd":"deploy","deploy":{"release":"\#(h.makeRelease("r1"))"}}"#, at: server.path, h)
        #expect(!running.contains(#""ok":false"#), "\(running)")
        var followers: [Int32] = []
        defer { for fd in followers { close(fd) } }
        for _ in 0..<(ControlServer.maxConnections + ControlServer.reservedForRoot) {
            let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            try #require(Sockets.connectUnix(client, server.path) == 0)
            let bytes = Array(#"{"v":1,"cmd":"attach"}"#.utf8) + [10]
            #expect(write(client, bytes, bytes.count) == bytes.count)
            followers.append(client)
            h.settle()  // accepted (the loop runs only here: a full backlog would block the connect)
        }
        h.settle()
        let refused = followers.filter { fd in
            var reply = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &reply, reply.count, Int32(MSG_DONTWAIT))
            return String(decoding: reply.prefix(max(n, 0)), as: UTF8.self).contains("too many clients following operations")
        }
        #expect(refused.count == ControlServer.maxConnections + ControlServer.reservedForRoot - ControlServer.maxFollowers, "\(refused.count) refused")
        let status = try Self.ask(#"{"v":1,"cmd":"status"}"#, at: server.path, h)
        #expect(status.contains(#""state":"#), "\(status)")
        h.autoReady = { _ in true }
        h.finishOperations()
    }

    /// A day-2 audit: a config of app "appd" whose [control] socket was app "appa"'s deployed a
    /// release into appa (`baton deploy --config d.toml`, exit 0), and its reload re-read appa's
    /// config. A request names its client's app now; another app's daemon refuses it (exit 2).
    @Test func aRequestForAnotherAppIsRefusedBeforeAnythingIsDone() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        try h.start()
        let server = try h.supervisor.openControlServer()
        h.supervisor.control = server
        let before = h.servingPIDs
        let deploy = try Self.ask(#"{"v":1,"cmd":"deploy","app":"appd","deploy":{"release":"\#(h.makeRelease("r1"))"}}"#, at: server.path, h)
        #expect(deploy.contains(#""code":2"#) && deploy.contains(#"is app \"fake\"'s, not \"appd\"'s"#), "\(deploy)")
        h.finishOperations()
        #expect(h.servingPIDs == before && h.supervisor.releaseState.current.directory == h.initialRelease)
        let status = try Self.ask(#"{"v":1,"cmd":"status","app":"appd"}"#, at: server.path, h)
        #expect(status.contains(#""code":2"#), "\(status)")
        // Its own name, or none (`--socket`), is answered.
        for request in [#"{"v":1,"cmd":"status","app":"fake"}"#, #"{"v":1,"cmd":"status"}"#] {
            #expect(try Self.ask(request, at: server.path, h).contains(#""state":"running""#))
        }
    }
}
