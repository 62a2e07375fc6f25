/// Who may do what on the control socket (README: "Who may do what").
///
/// Root and baton's own uid may run every verb. Members of `[control] group`
/// may run every verb except those that would let them run code of their
/// choosing as baton's user: `upgrade` (execs a binary as baton), and a
/// deploy with `--command` or `--env` while workers run as root (no `[app]
/// user`, or a user that is root). Members of `[control] read_group` may run
/// the read-only verbs. Everyone else is refused.
public struct ControlPolicy: Sendable {
    /// The peer's credentials (SO_PEERCRED and SO_PEERGROUPS).
    public struct Peer: Sendable {
        /// uid.
        public var uid: UInt32
        /// Primary and supplementary groups.
        public var groups: [UInt32]
        /// Creates a peer.
        public init(uid: UInt32, groups: [UInt32]) {
            self.uid = uid
            self.groups = groups
        }
    }

    /// baton's effective uid.
    public var daemonUID: UInt32
    /// `[control] group`.
    public var controlGroup: UInt32?
    /// `[control] read_group`.
    public var readGroup: UInt32?
    /// The uid workers run as (`[app] user`, else baton's own).
    public var workerUID: UInt32

    /// Creates a policy.
    public init(daemonUID: UInt32, controlGroup: UInt32?, readGroup: UInt32?, workerUID: UInt32) {
        self.daemonUID = daemonUID
        self.controlGroup = controlGroup
        self.readGroup = readGroup
        self.workerUID = workerUID
    }

    /// Whether `uid` is root or baton's own: it may run every verb.
    public func isPrivileged(_ uid: UInt32) -> Bool { uid == 0 || uid == daemonUID }

    /// The one-line refusal of a peer that may run no request at all (told at connect: with a
    /// `read_group` the socket is open to every user), or nil.
    public func connectRefusal(from peer: Peer) -> String? {
        if isPrivileged(peer.uid) { return nil }
        let groups = Set(peer.groups)
        if [controlGroup, readGroup].contains(where: { $0.map(groups.contains) == true }) { return nil }
        return "permission denied: uid \(peer.uid) is not root, baton's user, or in the control group"
            + (readGroup == nil ? "" : " or the read group")
    }

    /// The one-line refusal for `request` from `peer`, or nil when allowed.
    public func refusal(_ request: ControlRequest, from peer: Peer) -> String? {
        if isPrivileged(peer.uid) { return nil }
        let groups = Set(peer.groups)
        if let g = controlGroup, groups.contains(g) {
            if request.command == .upgrade {
                return "permission denied: upgrade executes a binary as baton's user; only root or uid \(daemonUID) may ask for it"
                    + " (uid \(peer.uid) is in the control group)"
            }
            if request.command == .deploy, workerUID == 0 {
                let options = request.deploy
                if options?.command != nil {
                    return "permission denied: a deploy --command from uid \(peer.uid) would run as root ([app] user is not set); only root may"
                }
                if options?.environment != nil {
                    return "permission denied: a deploy --env from uid \(peer.uid) would reach processes running as root ([app] user is not set); only root may"
                }
            }
            return nil
        }
        if request.command?.isMutating == false, let g = readGroup, groups.contains(g) { return nil }
        return "permission denied: uid \(peer.uid) is not root, baton's user, or in the control group"
    }
}
