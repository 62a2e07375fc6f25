import BatonCore
import Testing

@Suite("ControlPolicy: who may do what")
struct ControlPolicyTests {
    /// baton as root, control group 50, read group 60, workers as root unless told.
    private func policy(workerUID: UInt32 = 0, daemonUID: UInt32 = 0) -> ControlPolicy {
        ControlPolicy(daemonUID: daemonUID, controlGroup: 50, readGroup: 60, workerUID: workerUID)
    }

    private let member = ControlPolicy.Peer(uid: 1000, groups: [1000, 50])
    private let reader = ControlPolicy.Peer(uid: 1001, groups: [1001, 60])
    private let stranger = ControlPolicy.Peer(uid: 1002, groups: [1002])

    @Test("root and baton's own uid may run every verb, upgrade included")
    func rootAndOwnUID() {
        let deploy = ControlRequest(cmd: "deploy", deploy: DeployOptions(release: "/r", command: ["/bin/sh"]))
        for request in [ControlRequest(cmd: "upgrade", binary: "/x"), deploy] {
            #expect(policy().refusal(request, from: .init(uid: 0, groups: [0])) == nil)
            #expect(policy(daemonUID: 990).refusal(request, from: .init(uid: 990, groups: [990])) == nil)
        }
    }

    @Test("the control group may deploy a release, reload, roll back, prune, but not upgrade")
    func controlGroup() {
        for cmd in ["status", "reload", "rollback", "preflight", "prune-releases", "history", "attach"] {
            #expect(policy().refusal(ControlRequest(cmd: cmd), from: member) == nil, "\(cmd)")
        }
        #expect(policy().refusal(ControlRequest(cmd: "deploy", deploy: DeployOptions(release: "/r")), from: member) == nil)
        let upgrade = policy(workerUID: 33).refusal(ControlRequest(cmd: "upgrade"), from: member)
        #expect(upgrade?.hasPrefix("permission denied: upgrade") == true, "\(upgrade ?? "")")
    }

    @Test("--command and --env from the control group: refused while workers run as root, allowed with [app] user")
    func commandAndEnvironment() {
        let command = ControlRequest(cmd: "deploy", deploy: DeployOptions(release: "/r", command: ["/bin/sh", "-c", "id"]))
        let env = ControlRequest(cmd: "deploy", deploy: DeployOptions(release: "/r", environment: [EnvVar(name: "LD_PRELOAD", value: "/x.so")]))
        #expect(policy().refusal(command, from: member)?.contains("--command") == true)
        #expect(policy().refusal(env, from: member)?.contains("--env") == true)
        #expect(policy(workerUID: 33).refusal(command, from: member) == nil)
        #expect(policy(workerUID: 33).refusal(env, from: member) == nil)
    }

    @Test("the read group only reads; anyone else is refused")
    func readGroupAndStrangers() {
        #expect(policy().refusal(ControlRequest(cmd: "status"), from: reader) == nil)
        #expect(policy().refusal(ControlRequest(cmd: "reload"), from: reader) != nil)
        let refused = policy().refusal(ControlRequest(cmd: "status"), from: stranger)
        #expect(refused == "permission denied: uid 1002 is not root, baton's user, or in the control group")
    }

    /// The socket is open to every user when there is a read group: a peer that may run nothing
    /// is refused at connect; anyone who may run something is not.
    @Test("at connect, only a peer that may run nothing is refused")
    func connectRefusal() {
        for peer in [member, reader, .init(uid: 0, groups: [0]), .init(uid: 990, groups: [990])] {
            #expect(policy(daemonUID: 990).connectRefusal(from: peer) == nil, "\(peer.uid)")
        }
        #expect(
            policy().connectRefusal(from: stranger)
                == "permission denied: uid 1002 is not root, baton's user, or in the control group or the read group")
        let noReadGroup = ControlPolicy(daemonUID: 0, controlGroup: 50, readGroup: nil, workerUID: 0)
        #expect(noReadGroup.connectRefusal(from: reader) == "permission denied: uid 1001 is not root, baton's user, or in the control group")
    }
}
