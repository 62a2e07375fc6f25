import BatonCore
import BatonSystem
import Glibc

/// A deploy, reload or rollback: one rollout onto a target, and if it fails,
/// one rollout back. Lives on the event-loop thread.
/// Which one runs and which wait is `OperationQueue`'s (BatonCore) to say; this
/// object holds what the daemon needs to carry the operation out.
final class Operation {
    /// What was asked.
    typealias Kind = OperationKind

    /// Its handle in the supervisor's `OperationQueue`.
    let number: Int

    /// Where it is.
    enum Phase: String {
        case queued
        case rollingOut = "rolling-out"
        case rollingBack = "rolling-back"
    }

    /// Why the rollout failed, kept for the final reply.
    struct Failure {
        var reason: String
        var output: [String]
        var code: Int32
    }

    let kind: Kind
    /// deploy/rollback options (nil for reload).
    let options: DeployOptions?
    /// Who asked (nil: a signal).
    let uid: uid_t?
    /// Clients waiting for the result (and streaming progress).
    var waiters: [any OperationWaiter] = []
    var phase: Phase = .queued
    /// Every worker was measured for its start (`Supervisor.measureThen`).
    var measured = false
    /// The release rolled out (set when it starts).
    var target: Release?
    /// The release folder it goes to: its target once planned, else the one its request named
    /// (nil: a reload or policy restart, or a rollback not planned yet).
    var releaseDirectory: String? { target?.directory ?? options?.release }
    /// The release before (rollback goes back there).
    var previous: Release?
    /// Spec of the previous release, for the rollback rollout.
    var previousSpec: WorkerSpec?
    /// Reload: the config in force before, restored if the reload fails.
    var previousConfig: BatonConfig?
    /// Reload: what status said needed a restart, and the `[listen]` last read, before it
    /// (restored with `previousConfig`).
    var previousRestartOnly: (restartNeeded: [String], reloadedListen: [ListenAddress]?)?
    /// Progress lines so far (replayed to `--attach`).
    var progress: [String] = []
    /// Workers (or processes of their trees) the kernel's OOM killer took while it ran, other
    /// than its own new workers (whose failure says so): "slot 1: pid 14771"; and processes of
    /// baton's cgroup outside them: "outside the workers: pid 6876".
    var oomKills: [String] = []
    /// What its final line and history add for ``oomKills`` (nil: none).
    var oomSummary: String? {
        guard !oomKills.isEmpty else { return nil }
        let n = oomKills.count
        let what = oomKills.allSatisfy { $0.hasPrefix("slot ") } ? "worker process" : "process"
        return "the kernel's OOM killer killed \(n) \(what)\(n == 1 ? "" : "es") meanwhile (\(oomKills.joined(separator: ", ")))"
    }
    /// Old workers whose drain did not end cleanly (SIGKILLed at the stop timeout, killed,
    /// or exited non-zero): "slot 1: pid 14771 SIGKILLed at the stop timeout".
    var cutDrains: [String] = []
    /// Processes that left their workers' groups and still run when it ends (strays): one
    /// holding the listening socket answers with the release it started on.
    var strays: [pid_t] = []
    /// What its final line and history add: OOM kills and drains that did not end cleanly
    /// (nil: none). A drain audit: a deploy whose old workers were SIGKILLed with requests in
    /// flight said only "deploy finished", and history "succeeded".
    var endNotes: String? {
        var notes = oomSummary.map { [$0] } ?? []
        if !cutDrains.isEmpty {
            let n = cutDrains.count
            notes.append(
                "requests in flight may have been cut: \(n) old worker\(n == 1 ? "" : "s") did not drain cleanly (\(cutDrains.joined(separator: ", ")))")
        }
        if let mixedFolders { notes.append(mixedFolders) }
        if !strays.isEmpty {
            let n = strays.count
            notes.append(
                "\(n) process\(n == 1 ? "" : "es") that left \(n == 1 ? "its worker's" : "their workers'") process group still run\(n == 1 ? "s" : "") unsupervised (pid \(strays.prefix(10).map(String.init).joined(separator: ", "))\(n > 10 ? " and \(n - 10) more" : "")): one holding the listening socket answers with the release it started on until it exits or baton stops"
            )
        }
        return notes.isEmpty ? nil : notes.joined(separator: "; ")
    }
    /// deploy/rollback: what says its workers ended in more than one folder (``Supervisor/mixedFolders(_:)``).
    var mixedFolders: String?
    /// ``endNotes`` as the end of a line ("" when none).
    var endSuffix: String { endNotes.map { "; \($0)" } ?? "" }
    /// Every slot's new worker served and passed its window, only old workers' drains left,
    /// before its deadline passed: the deadline then rolls nothing back.
    var servedBeforeDeadline = false
    var failure: Failure?
    var startedAt: Duration = .zero
    /// deploy/rollback: `options.strategy`, parsed (nil: `[deploy] strategy`).
    var strategy: DeployStrategy?
    var startedAtWall: Double = 0
    var deadline: EventLoop.Token?
    /// When the deadline passes (loop time) and after how long: the client's `--timeout` (else
    /// `[deploy] timeout`), counted from the request. A rollout that finishes later fails for
    /// it, though its timer has not run yet (the loop or the host stalled past both).
    var deadlineAt: (at: Duration, after: Duration)?
    /// Slots the rollback covers.
    var rolledBackSlots: [Int] = []
    /// policy / roll-ahead: the slots to replace (nil: every slot).
    var slots: [Int]?
    /// policy / roll-ahead / max-requests / oom: the restart reason recorded on the slots
    /// (nil: the kind's, ``restartReason``).
    var reason: RestartReason?
    /// policy: each slot's own restart reason (recycles of several reasons share one operation).
    var slotReasons: [Int: RestartReason] = [:]
    /// policy: the surge width its rollout may use (the recycling budget).
    var recycleWidth = 1
    /// roll-ahead: the `--need` bytes to re-check.
    var need: UInt64 = 0
    /// reload: the config read and parsed off the loop (nil until then).
    var loadedConfig: Result<BatonConfig, any Error>?
    /// roll-ahead: the hold of the reservation taken once it fits (`--hold`).
    var hold: Duration = Reservation.defaultHold
    /// roll-ahead: the slots restarted so far, in order.
    var rolledAhead: [Int] = []
    /// A roll the held reservation asked for (no client waits for it).
    var keepsReservation = false
    /// The serving workers' median commit charge (`vm.overcommit_memory = 2` only), read once
    /// when its rollout was first planned (or by a roll-ahead's preflight) and reused at every
    /// replan: reading it walks every worker's maps.
    var commitPerWorker: CommitCharge = .notRead

    /// What an operation knows of the workers' commit charge.
    enum CommitCharge: Equatable {
        /// Not read yet: the next plan reads it.
        case notRead
        /// Read, and no worker's could be (none serves, or their maps were unreadable).
        case unknown
        /// Read: the median, in bytes.
        case known(UInt64)

        /// The figure read (nil: not read, or unknown).
        var bytes: UInt64? {
            if case .known(let bytes) = self { bytes } else { nil }
        }
    }

    init(number: Int, kind: Kind, options: DeployOptions?, uid: uid_t?) {
        self.number = number
        self.kind = kind
        self.options = options
        self.uid = uid
    }

    /// The restart reason recorded on the slots it replaces: `rollback` while it rolls back
    /// (the slots go back to the previous settings, whatever the operation was), else its
    /// own, else its kind's (a policy operation always names its own; `reload` stands in, as
    /// for no operation).
    var restartReason: RestartReason {
        if phase == .rollingBack { return .rollback }
        if let reason { return reason }
        switch kind {
        case .deploy: return .deploy
        case .rollback: return .rollback
        case .rollAhead: return .rollAhead
        case .reload, .policy: return .reload
        }
    }

    /// The restart reason recorded on `slot`: its own (a recycle), else the operation's.
    func restartReason(slot: Int) -> RestartReason { phase == .rollingBack ? .rollback : slotReasons[slot] ?? restartReason }

    /// Sends a progress line to every waiter and keeps it.
    func report(_ line: String) {
        progress.append(line)
        if progress.count > 500 { progress.removeFirst(progress.count - 500) }
        for w in waiters { w.send(.progress(line)) }
    }

    /// Sends the final reply to every waiter.
    func finish(_ reply: ControlReply) {
        for w in waiters { w.finish(reply) }
        waiters.removeAll()
    }
}
