import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// What the state directory does to operations (in memory, through the port): a deploy that
/// cannot be recorded or committed, and an operation a previous baton never finished.
@Suite struct SupervisorStateTests {
    @Test func deployThatCannotBeRecordedFailsBeforeTouchingAWorker() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        h.host.store.beginError = SystemError("write", errno: ENOSPC, subject: "deploy.json")
        let client = h.deploy(h.makeRelease("r1"))
        let reply = try #require(client.reply)
        #expect(reply.ok == false)
        #expect(reply.error?.hasPrefix("deploy failed, nothing changed: cannot record it in the state directory") == true, "\(reply)")
        #expect(h.host.children.count == 2, "no worker was started")
        #expect(h.supervisor.phase == .running)
        #expect(h.supervisor.history.last?.outcome == .failed)
        // `baton status` says so until a release is persisted again, as for a state directory
        // found unwritable at start-up (found by an operator audit: it said nothing, 2/2).
        #expect(h.supervisor.stateProblems.count == 1 && h.supervisor.stateProblems[0].contains("No space left on device"), "\(h.supervisor.stateProblems)")
        _ = h.deploy(h.makeRelease("r2"))
        #expect(h.supervisor.stateProblems.count == 1, "the same problem once")
        h.host.store.beginError = nil
        _ = h.deploy(h.makeRelease("r3"))
        h.finishOperations()
        #expect(h.supervisor.stateProblems.isEmpty)
    }

    @Test func commitThatCannotBePersistedRollsEverySlotBack() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        h.host.store.saveError = SystemError("rename", errno: EROFS, subject: "release.json")
        let r1 = h.makeRelease("r1")
        let client = h.deploy(r1)
        h.finishOperations()
        let reply = try #require(client.reply)
        #expect(reply.ok == false)
        #expect(reply.error?.contains("cannot persist the release in the state directory") == true, "\(reply)")
        #expect(reply.error?.contains("not committed") == true)
        #expect(h.servingReleases == [h.initialRelease, h.initialRelease])
        #expect(h.supervisor.releaseState.current.directory == h.initialRelease)
        #expect(h.host.store.releaseState == nil)
        #expect(h.host.store.inProgress == nil)
        #expect(h.supervisor.history.last?.outcome == .rolledBack)
        #expect(h.supervisor.stateProblems.count == 1 && h.supervisor.stateProblems[0].contains("Read-only file system"), "\(h.supervisor.stateProblems)")
    }

    /// A scale audit: the commit's two fsyncs ran on the event loop (6 to 16 s each on a busy
    /// disk): `status` timed out, `/metrics` answered after 16 s, and systemd's watchdog killed
    /// baton as the deploy finished. The commit is written on a thread of its own.
    @Test func committedDeployIsPersistedAndNoLongerInProgress() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let r1 = h.makeRelease("r1")
        h.deploy(r1)
        #expect(h.host.store.inProgress?.release == r1)
        h.finishOperations()
        #expect(h.host.store.savesOnLoop == 0, "the commit was written on the loop's thread")
        #expect(h.host.store.releaseState?.current.directory == r1)
        #expect(h.host.store.releaseState?.previous?.directory == h.initialRelease)
        #expect(h.host.store.inProgress == nil)
        #expect(h.host.store.loadHistory().map(\.outcome) == [.succeeded])
    }

    @Test func deployAPreviousBatonNeverFinishedIsRecordedAsInterrupted() throws {
        let h = try DaemonHarness(workers: 1)
        h.host.store.inProgress = HistoryEntry(
            kind: .deploy, release: "/srv/r9", previousRelease: nil, outcome: .inProgress, detail: nil, startedAt: wallClockNow() - 5,
            duration: 0, uid: 0)
        try h.start()
        let entry = try #require(h.supervisor.history.last)
        #expect(entry.outcome == .interrupted)
        #expect(entry.release == "/srv/r9")
        #expect(entry.detail == "baton exited before it finished; restarted on \(h.initialRelease)")
        #expect(h.servingReleases == [h.initialRelease])
    }

    /// An audit killed baton (SIGKILL) during a reload, three times: history had no line for it,
    /// where a deploy's says `interrupted`. Every operation is recorded while it runs now.
    @Test func aReloadOrPolicyRestartIsRecordedWhileItRuns() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let reload = h.reload()
        #expect(h.host.store.inProgress?.kind == .reload)
        #expect(h.host.store.inProgress?.release == h.initialRelease)
        #expect(h.host.store.inProgress?.outcome == .inProgress)
        h.finishOperations()
        #expect(reload.reply?.ok == true)
        #expect(h.host.store.inProgress == nil)
        #expect(h.host.store.loadHistory().map(\.kind) == [.reload])

        h.requestPolicyRestart(slot: 1, reason: .age)
        #expect(h.host.store.inProgress?.kind == .policy)
        h.finishOperations()
        #expect(h.host.store.inProgress == nil)
        #expect(h.host.store.loadHistory().map(\.kind) == [.reload, .policy])
        // A policy audit: the line named neither the slot nor why.
        #expect(h.host.store.loadHistory().last?.detail == "slot 1: age")
        #expect(h.host.store.loadHistory().first?.detail == nil, "a reload names no slot")
    }

    @Test func aReloadGoesOnWhenTheStateDirectoryCannotRecordIt() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        h.host.store.beginError = SystemError("write", errno: ENOSPC, subject: "deploy.json")
        let reload = h.reload()
        h.finishOperations()
        #expect(reload.reply?.ok == true, "\(String(describing: reload.reply))")
        #expect(h.supervisor.slots.allSatisfy { $0.lastRestartReason == RestartCause(.reload) })
        #expect(h.supervisor.stateProblems.count == 1 && h.supervisor.stateProblems[0].contains("No space left"), "\(h.supervisor.stateProblems)")
    }

    @Test func aReloadCutShortByAStopIsInterrupted() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let reload = h.reload()
        h.supervisor.beginShutdown()
        h.advance(by: .zero)
        #expect(reload.reply?.error == "baton is stopping: reload not finished")
        let entry = try #require(h.host.store.loadHistory().last)
        #expect(entry.kind == .reload && entry.outcome == .interrupted && entry.detail == "baton stopped before it finished")
        #expect(h.host.store.inProgress == nil)
    }

    @Test func aReloadAPreviousBatonNeverFinishedIsRecordedAsInterrupted() throws {
        let h = try DaemonHarness(workers: 1)
        h.host.store.inProgress = HistoryEntry(
            kind: .reload, release: h.initialRelease, previousRelease: h.initialRelease, outcome: .inProgress, detail: nil,
            startedAt: wallClockNow() - 5, duration: 0, uid: 0)
        try h.start()
        let entry = try #require(h.supervisor.history.last)
        #expect(entry.kind == .reload && entry.outcome == .interrupted)
        #expect(entry.detail == "baton exited before it finished; restarted on \(h.initialRelease)")
        #expect(h.supervisor.deploysByOutcome.isEmpty)
    }

    /// A re-audit (2 of 2): SIGTERM while a deploy's commit was being written (its fsync slow)
    /// answered "baton is stopping: deploy not finished" and recorded it interrupted, but the
    /// write went on, and the restarted baton came up on the new release. The stop waits for
    /// the commit now, and the client and history say what it did.
    @Test(arguments: [true, false])
    func aStopDuringTheCommitEndsAsTheCommitDid(_ writes: Bool) throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let r1 = h.makeRelease("r1")
        h.host.store.saveBlocked.withLock { $0 = true }
        if !writes { h.host.store.saveError = SystemError("rename", errno: EROFS, subject: "release.json") }
        h.awaitsOffloads = false
        let client = h.deploy(r1)
        for _ in 0..<400 where h.supervisor.committingOperation == nil { h.advance(by: .milliseconds(50)) }
        #expect(h.supervisor.committingOperation != nil, "the commit is being written")
        h.supervisor.beginShutdown()
        h.advance(by: .seconds(30))
        #expect(client.reply == nil, "answered by its commit, not by the stop")
        #expect(h.supervisor.committingOperation != nil && h.supervisor.slots.allSatisfy { $0.workers.isEmpty })
        h.host.store.saveBlocked.withLock { $0 = false }
        h.awaitsOffloads = true
        h.settle()
        #expect(h.supervisor.committingOperation == nil)
        let entry = try #require(h.supervisor.history.last)
        if writes {
            #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
            #expect(h.host.store.releaseState?.current.directory == r1)
            #expect(entry.outcome == .succeeded && entry.detail == "committed as baton stopped")
        } else {
            #expect(client.reply?.ok == false)
            #expect(client.reply?.error?.contains("not committed") == true, "\(String(describing: client.reply))")
            #expect(h.host.store.releaseState?.current.directory != r1)
            #expect(entry.outcome == .interrupted)
        }
        #expect(h.host.store.inProgress == nil)
    }

    /// A chaos audit (1 of 3 runs): a deploy whose rollout finished before its deadline, its
    /// commit still being written when the deadline's timer ran, logged "deadline of 7s passed:
    /// aborting", then finished. The commit decides; nothing is aborted or said meanwhile.
    @Test func aDeadlineWhileTheCommitIsWrittenAbortsNothing() throws {
        let h = try DaemonHarness(workers: 1) { $0.deploy.stabilityWindow = .zero }
        try h.start()
        h.host.store.saveBlocked.withLock { $0 = true }
        h.awaitsOffloads = false
        let client = h.deploy(h.makeRelease("r1"), timeout: "3s")
        for _ in 0..<40 where h.supervisor.committingOperation == nil { h.advance(by: .milliseconds(50)) }
        let op = try #require(h.supervisor.committingOperation, "the commit is being written")
        h.advance(by: .seconds(5))
        #expect(op.failure == nil, "\(String(describing: op.failure))")
        h.host.store.saveBlocked.withLock { $0 = false }
        h.awaitsOffloads = true
        h.settle()
        #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
    }
}
