import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// A worker's spec reads `[app] environment_file` and looks up `[app] user` through the port:
/// the fake host's files and accounts, no file on disk and no passwd lookup.
@Suite struct SupervisorSpecTests {
    static let environmentFile = "/srv/app/baton.env"

    func harness() throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 2) { $0.app.environmentFile = Self.environmentFile }
        h.host.fakeFiles[Self.environmentFile] = "GREETING=hello\n"
        try h.start()
        return h
    }

    @Test func theEnvironmentFileIsReadAgainAtEachDeploy() throws {
        let h = try harness()
        #expect(h.host.workers(slot: 0).first?.environment("GREETING") == "hello")
        h.host.fakeFiles[Self.environmentFile] = "GREETING=bonjour\n"
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
        #expect(h.supervisor.slots.allSatisfy { $0.current?.spec.variables.contains(EnvVar(name: "GREETING", value: "bonjour")) == true })
        #expect(h.host.workers(slot: 1).last?.environment("GREETING") == "bonjour")
    }

    @Test func aMissingEnvironmentFileRefusesTheDeployInOneLineAndTheWorkersKeepServing() throws {
        let h = try harness()
        let serving = h.servingPIDs
        h.host.fakeFiles[Self.environmentFile] = nil
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        let error = try #require(client.reply?.error)
        #expect(error.contains("app.environment_file: cannot read \(Self.environmentFile): No such file or directory"), "\(error)")
        #expect(!error.contains("\n"))
        #expect(h.servingPIDs == serving && h.servingReleases.allSatisfy { $0 == h.initialRelease })
        #expect(h.supervisor.phase == .running && !h.supervisor.operations.isBusy)
    }

    @Test func anUnknownUserRefusesTheStartInOneLine() throws {
        let h = try DaemonHarness(workers: 1) { $0.app.user = "nobody-at-all" }
        #expect(throws: SpawnError.self) { try h.start() }
        #expect(h.host.children.isEmpty, "no worker started")
        h.host.accounts["nobody-at-all"] = Credentials(uid: getuid(), gid: getgid(), groups: [])
        #expect(try h.supervisor.makeSpec(h.supervisor.config, release: h.supervisor.releaseState.current).credentials?.uid == getuid())
    }
}
