import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// The control socket's groups come from the port's accounts: `[control] group` owns the
/// socket, and a group that does not exist fails the start with its name.
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
    }

    @Test func anUnknownControlGroupFailsWithItsNameAndBindsNothing() throws {
        let h = try DaemonHarness(workers: 1)
        h.supervisor.config.control.socket = h.root + "/control.sock"
        h.supervisor.config.control.readGroup = "nosuchgroup"
        let error = #expect(throws: SpawnError.self) { try h.supervisor.openControlServer() }
        #expect("\(error.map { "\($0)" } ?? "")".contains("unknown group \"nosuchgroup\""))
        #expect(access(h.root + "/control.sock", F_OK) != 0)
    }
}
