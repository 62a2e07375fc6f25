import BatonCore
import Glibc

/// What the control server asks of the daemon, and nothing else: it hands each decoded,
/// authorized request over and never reads the supervisor's state itself.
protocol ControlRequestHandler: AnyObject {
    /// `[app] name`: a request naming another app is refused.
    var appName: String { get }
    /// The uid workers run as (`[app] user`), nil when they run as baton: allowed to read status.
    var workerUID: uid_t? { get }
    /// Recent deploys, oldest first.
    var history: [HistoryEntry] { get }
    /// `baton status`: the report to render, once the figures are in.
    func requestStatus(_ reply: @escaping (StatusReport) -> Void)
    /// `baton reload`.
    func requestReload(waiter: (any OperationWaiter)?, uid: uid_t?)
    /// `baton deploy` / `baton rollback`.
    func requestDeploy(kind: Operation.Kind, options: DeployOptions, waiter: any OperationWaiter, uid: uid_t)
    /// `baton deploy --attach [--release DIR]`.
    func attach(_ waiter: any OperationWaiter, release: String?)
    /// `baton preflight`.
    func requestPreflight(_ options: PreflightOptions, waiter: any OperationWaiter, uid: uid_t)
    /// `baton upgrade` (the connection is handed to the new image).
    func requestUpgrade(binary: String?, checkTimeout: Duration, waiter: ControlConnection)
    /// `baton releases` / `baton prune-releases`.
    func answerReleases(_ connection: ControlConnection, prune: Bool)
    /// Why a client just accepted is refused for want of descriptors (nil: there is room).
    func clientDescriptorShortage() -> String?
}

extension Supervisor: ControlRequestHandler {
    var workerUID: uid_t? { slots.first?.spec.credentials?.uid }
    var appName: String { config.app.name }
}
