import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// Each overlap rule of the operation queue as a client sees it through control requests,
/// with the real supervisor on a fake host and a manual clock.
@Suite struct SupervisorOverlapTests {
    @Test func deployDuringDeployIsRefused() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let r2 = h.makeRelease("r2")
        let first = h.deploy(r1)
        let second = h.deploy(r2)

        let refusal = try #require(second.reply)
        #expect(refusal.ok == false)
        #expect(refusal.code == 1)
        #expect(refusal.error == "deploy in progress (of \(r1)): refused; use --wait to queue behind it")
        // In the log too (a CI audit: only "deploy requested" was, for 210 refusals).
        #expect(h.log.lines(containing: "deploy of \(r2): deploy in progress (of \(r1)): refused").count == 1, "\(h.log.lines)")
        h.finishOperations()
        #expect(first.reply?.ok == true)
        #expect(h.servingReleases == [r1, r1])
        #expect(h.host.children.allSatisfy { $0.release != r2 })
    }

    @Test func deployWithWaitRunsAfterTheRunningOne() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let r2 = h.makeRelease("r2")
        let first = h.deploy(r1)
        let second = h.deploy(r2, wait: true)
        #expect(second.reply == nil)
        #expect(second.progress == ["waiting: a deploy is in progress; this deploy runs after it"])
        h.finishOperations()

        #expect(first.reply?.ok == true)
        #expect(second.reply?.ok == true)
        #expect(h.servingReleases == [r2, r2])
        #expect(h.supervisor.history.map(\.release) == [r1, r2])
        #expect(h.supervisor.releaseState.previous?.directory == r1)
    }

    /// A systemd/CI audit: `systemctl reload` during a deploy failed with ReloadResult=timeout
    /// (TimeoutStartSec=5s), then the reload ran and succeeded. While it waited, nothing
    /// extended systemd's timeout: only a running start-up or reload did.
    @Test func aReloadWaitingBehindADeployKeepsExtendingSystemdsTimeout() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let extensions = { h.host.recorder.messages.filter { $0.hasPrefix("EXTEND_TIMEOUT_USEC=") }.count }
        h.deploy(h.makeRelease("r1"))
        let during = extensions()
        let reload = RecordingWaiter()
        h.supervisor.requestReload(waiter: reload, uid: 0)
        #expect(reload.reply == nil)
        // It says why it waits, as a queued deploy does (an operator audit: it was silent).
        #expect(reload.progress == ["waiting: a deploy is in progress; this reload runs after it"], "\(reload.progress)")
        #expect(extensions() == during + 1, "extended when it was queued")
        // The deploy's next steps (each worker start) extend it again until the reload runs.
        h.advance(by: .seconds(1))
        let queuedSteps = extensions()
        #expect(queuedSteps > during + 1)
        h.finishOperations()
        #expect(reload.reply?.ok == true)
    }

    /// A systemd/CI audit: a `--wait` deploy queued behind another showed in `baton status`
    /// only as "1 queued", so nobody could see which release would go out next (its CI job had
    /// been cancelled, and it still ran, as a detached deploy does). Status now names each.
    @Test func statusNamesTheOperationsQueuedBehindTheRunningOne() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let r2 = h.makeRelease("r2")
        h.deploy(r1)
        h.deploy(r2, wait: true)
        h.supervisor.requestReload(waiter: nil, uid: 0)
        let status = h.supervisor.statusReport(memory: [:])
        #expect(status.operation?.queued == 2)
        #expect(status.operation?.queuedOperations == ["deploy of \(r2)", "reload"])
        let table = status.table(now: 0)
        #expect(table.contains("\n  queued: deploy of \(r2)\n  queued: reload"), "\(table)")
        h.finishOperations()
        #expect(h.supervisor.statusReport(memory: [:]).operation == nil)
    }

    /// An audit of misbehaving workers: a daemonizing worker's grandchild (setsid, its parent
    /// gone) was adopted by baton and never shown in `baton status`, although it held the
    /// listening socket and answered with the old code after a reload.
    @Test func statusListsTheStraysBatonAdopted() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        #expect(h.supervisor.statusReport(memory: [:]).strays == nil)
        let stray: pid_t = 7_777_777
        h.host.fakeProcesses.setChildren([stray], of: getpid())
        h.host.fakeProcesses.setStartTime(42, of: stray)
        let status = h.supervisor.statusReport(memory: [:])
        #expect(status.strays == [stray])
        #expect(status.table(now: 0).contains("strays: pid 7777777 (left their workers' process groups; not supervised, killed when baton stops)"))
        // Their memory, as this status read it (an apps audit: 2.4 GiB held by strays while
        // status said the workers' PSS was 77 MiB, and nothing more).
        h.host.fakeMemory.setTree(MemorySample(rss: 300 << 20, pss: 256 << 20, uss: 250 << 20), of: stray)
        var read: StatusReport?
        h.supervisor.requestStatus { read = $0 }
        h.awaitReads()
        let measured = try #require(read)
        #expect(measured.straysPSSBytes == 256 << 20)
        #expect(measured.table(now: 0).contains("strays: pid 7777777, PSS 256.0 MiB, in no memory figure below (left their workers' process groups"))
    }

    /// A pid-1 audit: an orphan handed to baton that never left its worker's process group
    /// (it dies with that group) was listed as a stray that left it.
    @Test func anOrphanInItsWorkersGroupIsNoStray() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current?.pid)
        let (inGroup, escaped): (pid_t, pid_t) = (7_777_777, 7_777_778)
        h.host.fakeProcesses.adopt([inGroup, escaped], groups: [inGroup: worker, escaped: escaped])
        #expect(h.supervisor.statusReport(memory: [:]).strays == [escaped])
    }

    /// A logs audit (3 of 10 crashes): a child of a crashed worker, dying with the group
    /// baton SIGKILLed, was logged as having left its worker's process group.
    @Test func aChildDyingWithItsCrashedWorkersGroupIsNoStray() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let worker = try #require(h.supervisor.slots[0].current?.pid)
        let child: pid_t = 7_777_777
        h.host.fakeProcesses.adopt([child], groups: [child: worker])
        try #require(h.host.child(worker)).end(.signaled(SIGKILL))
        h.settle()
        #expect(h.log.lines(containing: "left its worker's process group").isEmpty, "\(h.log.lines(containing: "left its"))")
        #expect(h.supervisor.statusReport(memory: [:]).strays == nil)
        // Still there once the group had time to die: it is one.
        h.advance(by: Supervisor.dyingGroupGrace)
        #expect(h.supervisor.statusReport(memory: [:]).strays == [child])
    }

    /// A re-audit: a `setsid` grandchild handed to baton while every worker lived was listed in
    /// status but logged only when some worker exited (never, if none did).
    @Test func aStrayIsLoggedAtTheNextCheckWithoutAnyWorkerExiting() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let stray: pid_t = 7_777_777
        h.host.fakeProcesses.adopt([stray], groups: [stray: stray])
        h.supervisor.checkRuntimeFiles()
        h.supervisor.checkRuntimeFiles()
        #expect(h.log.lines(containing: "pid 7777777 left its worker's process group").count == 1, "\(h.log.lines)")
    }

    /// A hostile-app audit (1 of 1): a deploy said "deploy finished", exit 0, while 5 strays of
    /// the old release (a worker's double-forked daemon keeping the listening socket) answered
    /// 145 of 200 requests; neither its lines nor history named them.
    @Test func aDeployThatEndsWithStraysRunningSaysSo() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let stray: pid_t = 7_777_777
        h.host.fakeProcesses.setChildren([stray], of: getpid())
        h.host.fakeProcesses.setStartTime(42, of: stray)
        let deploy = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        let message = deploy.reply?.message ?? ""
        #expect(message.contains("1 process that left its worker's process group still runs unsupervised (pid 7777777)"), "\(message)")
        #expect(h.supervisor.history.last?.detail?.contains("pid 7777777") == true)
        // 40 strays (a re-audit's line was 494 bytes): the first 10 and a count.
        let many = (0..<40).map { pid_t(7_000_000 + $0) }
        h.host.fakeProcesses.setChildren(many, of: getpid())
        for pid in many { h.host.fakeProcesses.setStartTime(42, of: pid) }
        let again = h.deploy(h.makeRelease("r2"))
        h.finishOperations()
        #expect(
            again.reply?.message?.contains("(pid 7000000, 7000001, 7000002, 7000003, 7000004, 7000005, 7000006, 7000007, 7000008, 7000009 and 30 more)")
                == true, "\(String(describing: again.reply?.message))")
    }

    @Test func rollbackDuringDeployIsRefusedUnlessWait() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        h.deploy(r1)
        h.finishOperations()
        let r2 = h.makeRelease("r2")
        h.deploy(r2)
        let refused = h.rollback()
        #expect(refused.reply?.code == 1)
        #expect(refused.reply?.error?.hasPrefix("deploy in progress") == true)
        let waiting = h.rollback(wait: true)
        h.finishOperations()
        #expect(waiting.reply?.ok == true)
        // The rollback ran after the deploy of r2 and undid it: its target is the release
        // before the serving one when it runs (r1), not when it was asked for (r0).
        #expect(h.supervisor.history.filter { $0.outcome != .refused }.map(\.kind) == [.deploy, .deploy, .rollback])
        // The refused one is in history too, as refused.
        #expect(h.supervisor.history.filter { $0.outcome == .refused }.map(\.kind) == [.rollback])
        #expect(h.servingReleases == [r1, r1])
    }

    @Test func reloadDuringDeployQueuesAndASecondReloadJoinsIt() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let deploy = h.deploy(r1)
        let reload = h.reload()
        let joined = h.reload()
        #expect(joined.progress == ["a reload is already queued: this request joins it"])
        #expect(reload.reply == nil && joined.reply == nil)
        h.finishOperations()

        #expect(deploy.reply?.ok == true)
        #expect(reload.reply?.ok == true)
        #expect(joined.reply == reload.reply)
        // One reload pass after the deploy, not two: both slots restarted twice in all.
        #expect(h.supervisor.history.map(\.kind) == [.deploy, .reload])
        #expect(h.supervisor.slots.allSatisfy { $0.restarts == 2 && $0.lastRestartReason == RestartCause(.reload) })
        #expect(h.servingReleases == [r1, r1])
    }

    @Test func deployDuringReloadWaitsForIt() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let reload = h.reload()
        #expect(h.supervisor.phase == .reloading)
        let r1 = h.makeRelease("r1")
        let deploy = h.deploy(r1)
        #expect(deploy.progress == ["waiting: a reload is in progress; this deploy runs after it"])
        h.finishOperations()
        #expect(reload.reply?.ok == true)
        #expect(deploy.reply?.ok == true)
        #expect(h.supervisor.history.map(\.kind) == [.reload, .deploy])
        #expect(h.servingReleases == [r1, r1])
    }

    @Test func requestsDuringStartUpWaitForEveryWorker() throws {
        let h = try DaemonHarness(workers: 2)
        h.autoReady = { _ in false }
        try h.start()
        #expect(h.supervisor.phase == .starting)
        let r1 = h.makeRelease("r1")
        let deploy = h.deploy(r1)
        #expect(deploy.progress == ["waiting: a start-up is in progress; this deploy runs after it"])
        #expect(h.host.children.count == 2)

        h.autoReady = { _ in true }
        h.advance(by: .zero)
        h.finishOperations()
        #expect(deploy.reply?.ok == true)
        #expect(h.servingReleases == [r1, r1])
    }

    @Test func policyRestartDuringAnOperationIsRefused() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        h.deploy(r1)
        h.requestPolicyRestart(slot: 1, reason: .age)
        h.finishOperations()
        #expect(h.supervisor.history.map(\.kind) == [.deploy])
        #expect(h.supervisor.operationTable.isEmpty)
    }

    /// A policy audit read "a policy is in progress": in a sentence it is a policy restart.
    @Test func aDeployWaitingBehindAPolicyRestartIsToldSoInWords() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        h.autoReady = { _ in false }
        h.requestPolicyRestart(slot: 1, reason: .age)
        #expect(h.supervisor.operation?.kind == .policy)
        let deploy = h.deploy(h.makeRelease("r1"), wait: true)
        #expect(deploy.progress == ["waiting: a policy restart is in progress; this deploy runs after it"], "\(deploy.progress)")
        h.autoReady = { _ in true }
        h.finishOperations()
        #expect(deploy.reply?.ok == true)
    }

    @Test func queuedDeployExpiresAtItsClientDeadline() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let r2 = h.makeRelease("r2")
        h.autoReady = { $0.release != r1 }  // the running deploy hangs in readiness
        let first = h.deploy(r1)
        let second = h.deploy(r2, wait: true, timeout: "3s")
        h.advance(by: .seconds(3))

        let expired = try #require(second.reply)
        #expect(expired.code == 4)
        #expect(expired.error == "deploy of \(r2): deadline of 3s passed while it waited for a deploy: not started, nothing changed")
        // In history, as refusals are, and what `--attach --release` answers with (a CI audit:
        // no line, and the attach answered with an older deploy of r2).
        #expect(h.supervisor.history.last?.release == r2 && h.supervisor.history.last?.outcome == .timedOut, "\(h.supervisor.history)")
        #expect(h.log.lines(containing: "deadline of 3s passed while it waited").count == 1)
        #expect(first.reply == nil)
        h.finishOperations()
        // readiness.timeout (30 s) killed r1's worker: the first deploy failed, nothing changed.
        #expect(first.reply?.ok == false)
        #expect(h.host.children.allSatisfy { $0.release != r2 })
        #expect(h.servingReleases == [h.initialRelease, h.initialRelease])
    }

    @Test func attachFollowsTheRunningDeployFromItsFirstLine() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let idle = RecordingWaiter()
        h.supervisor.attach(idle)
        #expect(idle.reply?.message == "nothing in progress; last: no deploy yet")

        let r1 = h.makeRelease("r1")
        let deploy = h.deploy(r1)
        h.advance(by: .seconds(1))
        let follower = RecordingWaiter()
        h.supervisor.attach(follower)
        #expect(follower.progress == deploy.progress, "the lines so far are replayed")
        h.finishOperations()
        #expect(follower.progress == deploy.progress)
        #expect(follower.reply == deploy.reply)
        #expect(follower.reply?.ok == true)
    }

    /// Left from stop 49: a CI job's deploy of r2 (current already) was refused, another job's
    /// deploy ran and rolled back to r2, and the job re-run as `--attach --release r2` was
    /// answered with r2's older success, exit 0: its own deploy never ran.
    @Test func attachWithAReleaseAnswersWithItsRefusalWhenThatIsItsLastLine() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r2 = h.makeRelease("r2")
        let r3 = h.makeRelease("r3")
        h.deploy(r2)
        h.finishOperations()
        h.autoReady = { $0.release != r3 }
        let other = h.deploy(r3)
        h.advance(by: .milliseconds(100))
        let refused = h.deploy(r2)
        h.advance(by: .milliseconds(100))
        #expect(refused.reply?.ok == false && refused.reply?.code == 1, "\(String(describing: refused.reply))")
        h.finishOperations()
        #expect(other.reply?.ok == false && h.servingReleases == [r2, r2])
        let rerun = RecordingWaiter()
        h.supervisor.attach(rerun, release: r2)
        #expect(rerun.reply?.ok == false && rerun.reply?.code == 1, "\(String(describing: rerun.reply))")
        #expect(rerun.reply?.error?.contains("last: deploy of \(r2) refused") == true, "\(String(describing: rerun.reply))")
        // Refused for a --max-surge past what any app has (a re-audit: the protocol refused it,
        // with no history line, and attach answered r2's older success, exit 0).
        let client = RecordingWaiter()
        let options = try decodedOptions(#"{"v":1,"cmd":"deploy","deploy":{"release":"\#(r2)","max_surge":1025}}"#)
        h.supervisor.requestDeploy(kind: .deploy, options: options, waiter: client, uid: 0)
        #expect(client.reply?.code == 2 && client.reply?.error == "--max-surge must be between 1 and 2, got 1025", "\(String(describing: client.reply))")
        let again = RecordingWaiter()
        h.supervisor.attach(again, release: r2)
        #expect(again.reply?.ok == false && again.reply?.error?.contains("got 1025") == true, "\(String(describing: again.reply))")
    }

    /// The deploy options of a request line, as the control server decodes them.
    private func decodedOptions(_ line: String) throws -> DeployOptions {
        try #require(try ControlProtocol.decodeRequest(Array(line.utf8)).get().deploy)
    }

    /// A CI audit (2 of 2): job B's deploy waited behind job A's; B was cancelled and re-run as
    /// `--attach`, which followed A's deploy and exited 0, and B's own deploy then failed.
    /// `--attach --release DIR` follows that release's deploy: running, queued, or last in history.
    @Test func attachWithAReleaseFollowsThatReleasesDeploy() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let a = h.makeRelease("a")
        let b = h.makeRelease("b")
        h.host.onSpawn = { child in if child.release == b { child.end(.exited(3)) } }
        h.autoReady = { $0.release != a }
        let jobA = h.deploy(a)
        h.advance(by: .milliseconds(100))
        let jobB = h.deploy(b, wait: true)
        h.advance(by: .milliseconds(100))
        let rerunB = RecordingWaiter()
        h.supervisor.attach(rerunB, release: b)
        let rerunA = RecordingWaiter()
        h.supervisor.attach(rerunA, release: a)
        let plain = RecordingWaiter()
        h.supervisor.attach(plain)
        h.autoReady = { _ in true }
        h.finishOperations()
        #expect(jobA.reply?.ok == true && jobB.reply?.ok == false)
        #expect(rerunA.reply == jobA.reply, "\(String(describing: rerunA.reply))")
        #expect(rerunB.reply?.ok == false && rerunB.reply?.code == jobB.reply?.code, "\(String(describing: rerunB.reply))")
        #expect(plain.reply == jobA.reply, "without --release it follows the deploy in progress, as before")
        // Afterwards: each release's last deploy, and none for a release never deployed.
        let lateA = RecordingWaiter()
        h.supervisor.attach(lateA, release: a)
        #expect(lateA.reply?.ok == true && lateA.reply?.message?.hasPrefix("no deploy of \(a) in progress; last: deploy of \(a) succeeded") == true)
        let lateB = RecordingWaiter()
        h.supervisor.attach(lateB, release: b)
        #expect(lateB.reply?.ok == false && lateB.reply?.code == 1)
        let never = RecordingWaiter()
        h.supervisor.attach(never, release: "/srv/never")
        #expect(never.reply?.ok == false && never.reply?.error == "no deploy of /srv/never in progress, queued or in history")
        // A CI-door audit: once another release took over, a's old success was still exit 0 for
        // a re-run that attached to a (its own request had never reached baton).
        let c = h.makeRelease("c")
        h.deploy(c)
        h.finishOperations()
        let afterC = RecordingWaiter()
        h.supervisor.attach(afterC, release: a)
        #expect(afterC.reply?.ok == false && afterC.reply?.code == 1, "\(String(describing: afterC.reply))")
        #expect(afterC.reply?.error?.hasSuffix("succeeded, but the workers run \(c) since: deploy \(a) again") == true, "\(String(describing: afterC.reply))")
    }

    /// A systemd/CI audit: `--attach` after the deploy had ended said "last: deploy … failed"
    /// and exited 0, so a CI step attaching again after a cancel passed on a failed deploy.
    /// It now exits as the last deploy's own client did, whatever ran or was refused after it.
    @Test func attachAfterTheDeployEndedExitsWithItsOutcome() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        h.host.onSpawn = { child in if child.release == r1 { child.end(.exited(3)) } }
        let failed = h.deploy(r1)
        h.finishOperations()
        #expect(failed.reply?.ok == false)
        h.host.onSpawn = nil
        // A reload after it succeeds and a deploy refused meanwhile leave the answer alone.
        let reload = RecordingWaiter()
        h.supervisor.requestReload(waiter: reload, uid: 0)
        h.finishOperations()
        #expect(reload.reply?.ok == true)
        let late = RecordingWaiter()
        h.supervisor.attach(late)
        #expect(late.reply?.ok == false && late.reply?.code == 1, "\(String(describing: late.reply))")
        #expect(late.reply?.error?.hasPrefix("nothing in progress; last: deploy of \(r1) ") == true, "\(String(describing: late.reply))")

        let r2 = h.makeRelease("r2")
        _ = h.deploy(r2)
        h.finishOperations()
        let afterGood = RecordingWaiter()
        h.supervisor.attach(afterGood)
        #expect(afterGood.reply?.ok == true && afterGood.reply?.message?.hasPrefix("nothing in progress; last: deploy of \(r2) succeeded") == true)

        // A CI audit: attached while a reload ran (begun after the deploy had succeeded), it
        // followed the reload and failed with it. It answers with the deploy now; and one
        // attached while a deploy waits behind the reload follows that deploy.
        h.autoReady = { _ in false }
        let reloading = RecordingWaiter()
        h.supervisor.requestReload(waiter: reloading, uid: 0)
        #expect(h.supervisor.operation?.kind == .reload)
        let duringReload = RecordingWaiter()
        h.supervisor.attach(duringReload)
        #expect(duringReload.reply?.ok == true, "\(String(describing: duringReload.reply))")
        #expect(duringReload.reply?.message?.hasPrefix("no deploy in progress (a reload is); last: deploy of \(r2) succeeded") == true)
        let r3 = h.makeRelease("r3")
        let queued = h.deploy(r3, wait: true)
        let follower = RecordingWaiter()
        h.supervisor.attach(follower)
        #expect(follower.reply == nil)
        #expect(follower.progress == ["waiting: a reload is in progress; this deploy runs after it"])
        h.autoReady = { _ in true }
        h.finishOperations()
        #expect(queued.reply?.ok == true, "\(String(describing: queued.reply))")
        #expect(follower.reply == queued.reply)
    }

    /// A dry run the real request would be refused for fails as that request would (exit 1), its
    /// plan in the details: an audit's CI gate on `--dry-run` passed (exit 0) during a deploy.
    @Test func dryRunDuringADeployChangesNothingAndFailsAsTheRequestWould() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let r2 = h.makeRelease("r2")
        h.deploy(r1)
        let client = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: r2, dryRun: true), waiter: client, uid: 0)
        h.awaitReads()
        let reply = try #require(client.reply)
        #expect(reply.ok == false)
        #expect(reply.code == nil, "exit 1, as the refused deploy")
        #expect(reply.error == "dry run: nothing changed; the deploy would be refused: deploy in progress (of \(r1)): refused; use --wait to queue behind it")
        #expect(reply.details?.first == "deploy: \(h.initialRelease) → \(r2)")
        // It says what the real request would meet now (an audit: the plan read as if nothing
        // ran, and the deploy was then refused).
        #expect(reply.details?.dropFirst().first == "now: it would be refused: deploy in progress (of \(r1)): refused; use --wait to queue behind it")
        let waiting = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: r2, dryRun: true, wait: true), waiter: waiting, uid: 0)
        h.awaitReads()
        #expect(waiting.reply?.ok == true && waiting.reply?.message == "dry run: nothing changed")
        #expect(
            waiting.reply?.details?.dropFirst().first?.hasPrefix("now: it would wait: a deploy is in progress (1 ahead of it)") == true,
            "\(String(describing: waiting.reply))")
        h.finishOperations()
        #expect(h.host.children.allSatisfy { $0.release != r2 })
        #expect(h.supervisor.history.map(\.release) == [r1])
        let idle = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: r2, dryRun: true), waiter: idle, uid: 0)
        h.awaitReads()
        #expect(idle.reply?.details?.dropFirst().first == "now: nothing else runs or waits: it would start at once")
        #expect(h.supervisor.history.map(\.release) == [r1] && h.supervisor.operation == nil)
    }

    /// A docs audit: the dry run named slot 0 as the canary while the deploy began with the
    /// worker that grew most (slot 1 or 2 in 2 of 5 deploys). Both take the same order now.
    @Test func theDryRunNamesTheCanaryTheDeployReplacesFirst() throws {
        let h = try DaemonHarness(workers: 3)
        h.host.fakeMemory.worker = MemorySample(rss: 60 << 20, pss: 40 << 20, uss: 30 << 20, shared: 10 << 20)
        try h.start()
        let grown = try #require(h.supervisor.slots[1].current)
        let fresh = try #require(grown.ussAtReady)
        h.host.fakeMemory.setTree(MemorySample(rss: 2 * fresh + (64 << 20), pss: fresh + (32 << 20), uss: fresh + (32 << 20)), of: grown.pid)
        let r1 = h.makeRelease("r1")
        let client = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: r1, dryRun: true), waiter: client, uid: 0)
        h.awaitReads()
        let plan = try #require(client.reply?.details)
        #expect(plan.contains { $0.contains("canary slot 1 first") }, "\(plan)")
        #expect(plan.filter { $0.hasPrefix("slot ") }.map { $0.prefix(6) } == ["slot 1", "slot 0", "slot 2"], "\(plan)")
        let deploy = h.deploy(r1)
        h.finishOperations()
        #expect(deploy.progress.contains { $0.contains("canary slot 1") }, "\(deploy.progress)")
    }

    @Test func shutdownDuringDeployAnswersEveryClientAndStopsEveryWorker() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let r2 = h.makeRelease("r2")
        let running = h.deploy(r1)
        let queued = h.deploy(r2, wait: true)
        h.supervisor.beginShutdown()
        h.advance(by: .zero)

        #expect(running.reply?.error == "baton is stopping: deploy not finished")
        #expect(queued.reply?.error == "baton is stopping: deploy not finished")
        #expect(h.supervisor.history.last?.outcome == .interrupted)
        #expect(h.supervisor.slots.allSatisfy { $0.workers.isEmpty })
        #expect(h.host.children.allSatisfy { !$0.isRunning })
        let late = h.deploy(r2)
        #expect(late.reply?.error == "baton is stopping")
    }

    /// A chaos audit (3 of 3 runs): with a reload running and a `rollback --wait` queued, a
    /// deploy was refused as "deploy in progress (of R6)": no deploy ran, and the rollback went
    /// to R1 in the end. The refusal names the blocker as it is.
    @Test func aRefusalNamesAQueuedRollbackAsSuch() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        var spawned = 0
        h.host.onSpawn = { _ in spawned += 1 }
        h.autoReady = { _ in spawned < 2 }  // the deploy's worker serves; the reload's never does
        let first = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(first.reply?.ok == true)
        let reload = h.reload()
        let rollback = h.rollback(wait: true)
        h.advance(by: .seconds(1))
        #expect(reload.reply == nil && rollback.reply == nil, "\(String(describing: rollback.reply))")
        let refused = h.deploy(h.makeRelease("r2"))
        #expect(
            refused.reply?.error == "a rollback is queued (behind a reload in progress): refused; use --wait to queue behind it",
            "\(String(describing: refused.reply))")
        h.autoReady = { _ in true }
        h.finishOperations()
    }
}
