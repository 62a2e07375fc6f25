import BatonCore
@testable import BatonDaemon
import BatonSystem
import Foundation
import Glibc
import Testing

/// Readiness (exec probes, the readiness timeout), reloads and the start-up queue through the
/// real supervisor on a fake host: probes are fake children too.
@Suite struct SupervisorReadinessTests {
    @Test func execProbeMakesAWorkerReadyAndAFailingOneRetriesAfterTheInterval() throws {
        let h = try DaemonHarness(workers: 1) { config in
            config.readiness = ReadinessConfig(mode: .exec, timeout: .seconds(30), probe: ["/srv/probe"], probeInterval: .seconds(1))
        }
        h.autoReady = { _ in false }  // only the probe says so
        var probes = 0
        h.host.onSpawn = { child in
            guard child.environment("BATON_WORKER_PID") != nil else { return }
            probes += 1
            child.end(.exited(probes < 3 ? 1 : 0))  // the third run passes
        }
        try h.start()
        #expect(probes == 1)
        #expect(h.supervisor.phase == .starting)
        h.advance(by: .seconds(1))
        #expect(probes == 2)
        #expect(h.supervisor.phase == .starting)
        h.advance(by: .seconds(1))
        #expect(probes == 3)
        #expect(h.allReady)
        #expect(h.supervisor.phase == .running)
        let probe = try #require(h.host.children.last)
        #expect(probe.request.argv == ["/srv/probe"])
        #expect(probe.environment("BATON_WORKER_PID") == h.servingPIDs[0].map { String($0) })
    }

    /// A worker's first liveness probe runs `liveness_interval` after it became ready. It used to
    /// be armed by the next liveness check, which without a watchdog or a stopped check ran only
    /// every `[memory] check_interval` (5 s): the first run came up to 5 s late, every time a worker
    /// was replaced too.
    @Test func theFirstLivenessProbeRunsAnIntervalAfterReady() throws {
        let h = try DaemonHarness(workers: 1) { config in
            config.readiness = ReadinessConfig(mode: .notify, timeout: .seconds(30), stoppedTimeout: nil)
            config.readiness.livenessProbe = ["/srv/alive"]
            config.readiness.livenessInterval = .seconds(1)
        }
        var probes: [pid_t] = []
        h.host.onSpawn = { child in
            guard child.environment("BATON_WORKER_PID") != nil else { return }
            probes.append(child.pid)
            child.end(.exited(0))
        }
        try h.start()
        #expect(probes.isEmpty)
        h.advance(by: .seconds(1))
        #expect(probes.count == 1, "one run, an interval after ready")
        h.advance(by: .seconds(1))
        #expect(probes.count == 2)
    }

    /// `boot_nice` is applied once the worker runs its own program, not in the forked child: the
    /// spawn waits for the child's execve on baton's event loop, and a child made nicer before
    /// it waited for the CPU behind everything else (0.6 s for one spawn at load average 25).
    @Test func bootNiceIsSetAfterExecNotInTheForkedChild() throws {
        // Without the right to give the priority back, baton boots no worker nicer.
        guard ProcessPriority.canLower(to: ProcessPriority.current) else { return }
        let h = try DaemonHarness(workers: 1) { config in config.readiness.bootNice = 10 }
        h.autoReady = { _ in false }
        try h.start()
        let worker = try #require(h.host.children.first)
        let nicer = min(19, ProcessPriority.current + 10)
        #expect(h.host.priorities.map(\.pid) == [worker.pid] && h.host.priorities.map(\.nice) == [nicer], "\(h.host.priorities)")
        // It comes back once the worker is ready.
        h.autoReady = { _ in true }
        h.settle()
        #expect(h.host.priorities.map(\.nice) == [nicer, ProcessPriority.current], "\(h.host.priorities)")
    }

    /// A process of the tree that was forking while baton gave the tree its priority back
    /// gave its child the boot value, and the child is not in the tree until the fork returns
    /// (gunicorn's master forks its worker right after READY=1): baton walks the tree's
    /// threads again a moment later.
    @Test func theTreeIsWalkedAgainAfterItsPriorityCameBack() throws {
        guard ProcessPriority.canLower(to: ProcessPriority.current) else { return }
        let h = try DaemonHarness(workers: 1) { config in config.readiness.bootNice = 10 }
        try h.start()
        h.settle()
        let worker = try #require(h.host.children.first)
        let nicer = min(19, ProcessPriority.current + 10)
        #expect(h.host.priorities.map(\.nice) == [nicer, ProcessPriority.current], "\(h.host.priorities)")
        h.advance(by: .seconds(1))
        #expect(h.host.priorities.map(\.pid) == [worker.pid, worker.pid, worker.pid], "\(h.host.priorities)")
        #expect(h.host.priorities.map(\.nice) == [nicer, ProcessPriority.current, ProcessPriority.current], "\(h.host.priorities)")
        h.advance(by: .seconds(10))
        #expect(h.host.priorities.count == 3, "once: \(h.host.priorities)")
    }

    /// A boot that yields to everything else on a busy host gets baton's priority back at half its readiness
    /// timeout, so boot_nice alone never starves it into the timeout; and once, not again when
    /// it becomes ready.
    @Test func aBootStillRunningAtHalfItsTimeoutGetsItsPriorityBack() throws {
        guard ProcessPriority.canLower(to: ProcessPriority.current) else { return }
        let h = try DaemonHarness(workers: 1) { config in config.readiness.bootNice = 10 }
        h.autoReady = { _ in false }
        try h.start()
        let worker = try #require(h.host.children.first)
        h.advance(by: .seconds(14))
        #expect(h.host.priorities.count == 1, "\(h.host.priorities)")
        h.advance(by: .seconds(1))
        #expect(h.host.priorities.map(\.pid) == [worker.pid, worker.pid], "\(h.host.priorities)")
        #expect(h.host.priorities.last?.nice == ProcessPriority.current)
        h.autoReady = { _ in true }
        h.settle()
        #expect(h.supervisor.phase == .running)
        #expect(h.host.priorities.count == 2, "set back once, not again when ready: \(h.host.priorities)")
        #expect(h.host.priorities.map(\.nice).filter { $0 != ProcessPriority.current }.count == 1, "\(h.host.priorities)")
    }

    @Test func probeRunningPastItsTimeoutIsKilled() throws {
        let h = try DaemonHarness(workers: 1) { config in
            config.readiness = ReadinessConfig(
                mode: .exec, timeout: .seconds(30), probe: ["/srv/probe"], probeInterval: .seconds(1), probeTimeout: .seconds(2))
        }
        h.autoReady = { _ in false }
        try h.start()
        let probe = try #require(h.host.children.first { $0.environment("BATON_WORKER_PID") != nil })
        h.advance(by: .seconds(2))
        #expect(probe.signals == [SIGKILL])
        #expect(!probe.isRunning)
        // The next run comes after probe_interval.
        h.advance(by: .seconds(1))
        #expect(h.host.children.filter { $0.environment("BATON_WORKER_PID") != nil }.count == 2)
    }

    @Test func newWorkerNeverReadyIsKilledAtTheReadinessTimeout() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let old = h.servingPIDs
        let r1 = h.makeRelease("r1")
        h.autoReady = { $0.release != r1 }
        let client = h.deploy(r1)
        h.advance(by: .seconds(29))
        #expect(client.reply == nil)
        h.advance(by: .seconds(1))
        let canary = try #require(h.host.children.first { $0.release == r1 })
        #expect(canary.signals.contains(SIGKILL))
        let reply = try #require(client.reply)
        #expect(reply.error?.contains("readiness-timeout") == true, "\(reply)")
        // What was awaited, in the reply too (only the log said it: the last stop's note).
        #expect(
            reply.error?.contains(
                "readiness-timeout: not ready after 30s (no READY=1 on its NOTIFY_SOCKET; for an app that sends none, [readiness] mode = \"delay\" or \"exec\")"
            )
                == true, "\(reply)")
        #expect(reply.error?.contains("nothing changed") == true)
        #expect(h.servingPIDs == old)
    }

    @Test func reloadWithABrokenConfigChangesNothingAndEndsReloading() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let old = h.servingPIDs
        h.supervisor.options.reloadConfig = { throw DaemonError("config.toml: line 3: expected a value") }
        let client = h.reload()
        h.finishOperations()
        let reply = try #require(client.reply)
        #expect(reply.ok == false)
        #expect(reply.error == "reload failed, nothing changed: config.toml: line 3: expected a value")
        #expect(h.servingPIDs == old)
        #expect(h.supervisor.phase == .running)
        // systemd hears READY=1 again after the failed reload (it was READY=1 before too).
        #expect(h.host.recorder.messages.last { $0.hasPrefix("READY=1") || $0.hasPrefix("RELOADING=1") }?.hasPrefix("READY=1") == true)
    }

    /// An operator audit: a reload that changed `[app] directory` said "finished" and nothing
    /// else; the workers stayed on the current release, and a restart later came up elsewhere.
    @Test func reloadChangingTheAppDirectorySaysTheWorkersStay() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let changed = h.nextReloadReads { config in
            config.app.directory = h.makeRelease("r5")
        }
        let client = h.reload()
        h.finishOperations()
        #expect(client.reply?.ok == true)
        #expect(
            client.progress.contains(
                "[app] directory changed: the workers stay on the current release \(h.initialRelease); it is the release baton starts on when none is persisted (baton deploy --release \(changed.app.directory) runs it now)"
            ), "\(client.progress)")
        #expect(h.servingReleases == [h.initialRelease])
    }

    /// A day-2 audit: `state_directory` moved, a reload said only that it needed a restart; the
    /// restart then ran `[app] directory` with an empty history. It says what a restart would
    /// lose when the new directory holds no release state, and nothing when it does.
    @Test func reloadMovingTheStateDirectorySaysWhatARestartWouldLose() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        mkdir(h.root + "/moved", 0o750)
        h.nextReloadReads { config in
            config.app.stateDirectory = h.root + "/moved"
        }
        // Nothing deployed or recorded yet: nothing to lose (a reload audit: "would start on
        // [app] directory X, not on the current release X").
        let first = h.reload()
        h.finishOperations()
        #expect(first.reply?.ok == true)
        #expect(!first.progress.contains { $0.hasPrefix("the new state directory") }, "\(first.progress)")
        let r1 = h.makeRelease("r1")
        _ = h.deploy(r1)
        h.finishOperations()
        let client = h.reload()
        h.finishOperations()
        #expect(client.reply?.ok == true)
        #expect(
            client.progress.contains {
                $0.hasPrefix("the new state directory \(h.root)/moved holds no release state: a restart would start on [app] directory")
                    && $0.hasSuffix("; copy release.json, history.jsonl, deployed.json from \(h.supervisor.releases.directory) into it first")
            }, "\(client.progress)")
        // Back on [app] directory, the previous release is what release.json keeps (a re-audit:
        // the line left release.json out, and following it lost the rollback target).
        _ = h.deploy(h.supervisor.config.app.directory)
        h.finishOperations()
        let back = h.reload()
        h.finishOperations()
        #expect(
            back.progress.contains {
                $0.contains("a restart would start without the previous release \(r1) (nothing to roll back to), with no history; copy release.json")
            }, "\(back.progress)")
        _ = creat(h.root + "/moved/release.json", 0o640)
        let again = h.reload()
        h.finishOperations()
        #expect(!again.progress.contains { $0.hasPrefix("the new state directory") }, "\(again.progress)")
        // Another app's (a re-audit: only "needs a restart" was said; the restart exited 2).
        let other = ReleaseState(current: Release(directory: h.initialRelease), previous: nil, app: "zzz")
        let text = String(decoding: try JSONEncoder().encode(other), as: UTF8.self)
        let fd = open(h.root + "/moved/release.json", O_WRONLY | O_TRUNC)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        let third = h.reload()
        h.finishOperations()
        #expect(
            third.progress.contains(
                "the new state directory \(h.root)/moved holds app \"zzz\"'s release state: a restart would exit 2 (give this app a state_directory of its own)"
            ),
            "\(third.progress)")
    }

    /// A re-audit: a reload that renamed the app said "restart baton to rename the app"; with
    /// its own state_directory, whose release.json names the old app, that restart exited 2.
    @Test func reloadRenamingTheAppSaysTheStateDirectoryNamesTheOldOne() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        mkdir(h.root + "/own-state", 0o750)
        _ = creat(h.root + "/own-state/release.json", 0o640)
        h.nextReloadReads { config in
            config.app.name = "renamed"
            config.app.stateDirectory = h.root + "/own-state"
        }
        let client = h.reload()
        h.finishOperations()
        #expect(
            client.reply?.error?.contains(
                "app.name changed: restart baton to rename the app (its state_directory's release.json names \"fake\": move it away first, or the restart exits 2)"
            )
                == true, "\(String(describing: client.reply))")
    }

    @Test func reloadChangingTheWorkerCountIsRefused() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        h.nextReloadReads { config in
            config.app.workers = 3
        }
        let client = h.reload()
        h.finishOperations()
        #expect(client.reply?.error?.contains("app.workers changed from 2 to 3") == true, "\(String(describing: client.reply))")
        #expect(h.supervisor.slots.count == 2)
    }

    /// A reload audit: a reload the descriptor check refused said "nothing changed", but its
    /// config stayed in force (the next deploy started workers on it) and status said a restart
    /// was needed; so did a reload that failed and rolled back.
    @Test func aFailedReloadChangesNothing() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let original = h.supervisor.config
        h.nextReloadReads { config in
            config.stop.timeout = .seconds(7)
            config.metrics.address = "127.0.0.1:18434"
        }
        h.host.descriptors = { (45, 48) }
        let refused = h.reload()
        h.finishOperations()
        #expect(
            refused.reply?.error?.hasPrefix("reload failed, nothing changed: baton's descriptors leave no room") == true, "\(String(describing: refused.reply))"
        )
        #expect(h.supervisor.config == original)
        #expect(h.supervisor.statusReport(memory: [:]).restartNeeded == nil)
        h.host.descriptors = { (10, 48) }
        h.host.spawnError = SpawnError(step: "exec /srv/worker", errno: ENOENT)
        let failed = h.reload()
        h.finishOperations()
        #expect(failed.reply?.ok == false, "\(String(describing: failed.reply))")
        #expect(h.supervisor.config == original)
        #expect(h.supervisor.statusReport(memory: [:]).restartNeeded == nil)
    }

    /// A reload audit: a config cut off before `[listen]` passed a reload with only "[listen]
    /// changed", where check-config notes that serve would exit 2.
    @Test func aReloadThatEmptiesListenSaysTheNextStartFails() throws {
        let h = try DaemonHarness(workers: 1) { $0.listen.addresses = [.tcp(host: "127.0.0.1", port: 18435)] }
        try h.start()
        h.nextReloadReads { config in config.listen.addresses = [] }
        let client = h.reload()
        h.finishOperations()
        #expect(client.reply?.ok == true)
        #expect(
            client.progress.contains("[listen] has no addresses: baton not socket-activated, as now, would exit 2 at its next start"), "\(client.progress)")
    }

    /// A reload audit: after a reload that changed `[listen]`, only the reload's reply and the
    /// log said a restart was needed; `baton status` showed nothing. It says so until the next
    /// reload's config no longer asks for one.
    @Test func statusShowsARestartNeededAfterAReloadThatChangedListen() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        #expect(h.supervisor.statusReport(memory: [:]).restartNeeded == nil)
        let original = h.supervisor.config
        h.nextReloadReads { config in
            config.listen.addresses = [.tcp(host: "127.0.0.1", port: 18433)]
        }
        let client = h.reload()
        h.finishOperations()
        #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
        let report = h.supervisor.statusReport(memory: [:])
        #expect(report.restartNeeded == ["[listen]"])
        #expect(report.table(now: 0).contains("restart needed: [listen] changed at the last reload (a reload cannot apply them)"))
        // The file back as it was: nothing waits for a restart any more.
        h.supervisor.options.reloadConfig = { original }
        _ = h.reload()
        h.finishOperations()
        #expect(h.supervisor.statusReport(memory: [:]).restartNeeded == nil)
    }

    /// A systemd/CI audit: under socket activation, a reload that changed `[listen]` advised
    /// "takes effect only after a restart of baton (systemctl restart)", but a restarted baton
    /// gets the same sockets from the socket unit again; and baton never said that `[listen]`
    /// named other sockets than the unit passed.
    @Test func aListenChangeUnderSocketActivationPointsAtTheSocketUnit() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.supervisor.socketsFromUnit = true
        h.nextReloadReads { config in
            config.listen.addresses = [.tcp(host: "127.0.0.1", port: 18432)]
        }
        let client = h.reload()
        h.finishOperations()
        #expect(client.reply?.ok == true)
        #expect(client.progress.contains("[listen] changed: not used under socket activation (the socket unit's ListenStream= is)"), "\(client.progress)")
        #expect(!client.progress.contains { $0.contains("needs a restart of baton") })

        let unit = ["127.0.0.1:18431"]
        #expect(Supervisor.listenMismatch(configured: [.tcp(host: "127.0.0.1", port: 18431)], passed: unit) == nil)
        #expect(Supervisor.listenMismatch(configured: [], passed: unit) == nil, "[listen] may name nothing under socket activation")
        let both: [ListenAddress] = [.tcp(host: "127.0.0.1", port: 18431), .tcp(host: "127.0.0.1", port: 18432)]
        #expect(
            Supervisor.listenMismatch(configured: both, passed: unit)
                == "[listen] addresses (127.0.0.1:18431, 127.0.0.1:18432) are not the sockets systemd passed (127.0.0.1:18431): "
                + "under socket activation the socket unit's ListenStream= decides, and baton listens on what it received")
    }

    /// An audit of misbehaving workers: one worker's `shutdown(SHUT_RD)` on the inherited
    /// listening socket refused every new connection, for every worker, while `baton status`
    /// said 3/3 ready and listed the socket. Status now names it as a problem, and the liveness
    /// check logs it once.
    @Test func aListeningSocketShutDownByAWorkerIsAProblemInStatus() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 4)
        let address = listener.address
        h.supervisor.listeners = [listener]
        #expect(Sockets.isListening(listener.fd) == true)
        #expect(h.supervisor.statusReport(memory: [:]).problems == nil)
        #expect(shutdown(listener.fd, Int32(SHUT_RD)) == 0)
        #expect(Sockets.isListening(listener.fd) == false)
        let problems = h.supervisor.statusReport(memory: [:]).problems ?? []
        #expect(
            problems == [
                "listening socket \(address) accepts no connections: a process holding it shut it down (shutdown(2)); restart the socket unit (or baton, without one)"
            ])
        h.supervisor.startLivenessChecks()
        h.advance(by: h.supervisor.config.memory.checkInterval + .seconds(1))
        #expect(h.supervisor.reportedDeadListeners == [address])
    }

    @Test func deployQueuedBehindAStartUpThatNeverFinishesExpires() throws {
        let h = try DaemonHarness(workers: 2)
        h.autoReady = { $0.slot != 1 }
        try h.start()
        let r1 = h.makeRelease("r1")
        let client = h.deploy(r1, timeout: "10s")
        h.advance(by: .seconds(10))
        let reply = try #require(client.reply)
        #expect(reply.code == 4)
        #expect(reply.error == "deploy of \(r1): deadline of 10s passed while it waited for a start-up: not started, nothing changed")
        #expect(h.host.children.allSatisfy { $0.release != r1 })
        // Never ran: one timed-out line, as a refusal has one (a CI audit: none, and `--attach
        // --release` answered with an older deploy of the release).
        #expect(h.supervisor.history.map(\.outcome) == [.timedOut], "\(h.supervisor.history)")
        // The start-up goes on: once the slot serves, baton runs.
        h.autoReady = { _ in true }
        h.advance(by: .zero)
        #expect(h.supervisor.phase == .running)
        #expect(h.supervisor.releaseState.current.directory == h.initialRelease)
    }

    @Test func stoppingRejectsEveryRequest() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.supervisor.beginShutdown()
        h.advance(by: .zero)
        #expect(h.reload().reply?.error == "baton is stopping")
        #expect(h.deploy(h.makeRelease("r1")).reply?.error == "baton is stopping")
        #expect(h.rollback().reply?.error == "baton is stopping")
        #expect(h.host.recorder.messages.contains("STOPPING=1\nSTATUS=stopping"))
    }
}
