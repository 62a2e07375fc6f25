import BatonCore
import BatonSystem
import Glibc
import Logging

/// What systemd sees of the supervisor (WATCHDOG=1, STATUS=, EXTEND_TIMEOUT_USEC=) and the
/// end of its life: SIGTERM stops every worker gracefully, then the loop.
extension Supervisor {
    // MARK: - Watchdog and status

    func scheduleWatchdog(_ interval: Duration) {
        pingWatchdog()
        loop.schedule(after: interval) { [unowned self] in self.scheduleWatchdog(interval) }
    }

    /// WATCHDOG=1 now if a ping is due: a turn of the loop that starts many workers waits
    /// for each one's execve (the spawn's vfork), which on a host short of CPU takes long
    /// enough for the turn to outlast WATCHDOG_USEC (a 7.6 s gap was seen while 8 workers
    /// started, under CPU hogs). Each finished spawn is progress: it feeds the watchdog.
    func feedWatchdogIfDue() {
        guard let interval = notifier.watchdogPingInterval, let last = lastWatchdogPing, loop.now() - last >= interval else { return }
        pingWatchdog()
    }

    private func pingWatchdog() {
        notifier.notify("WATCHDOG=1")
        lastWatchdogPing = loop.now()
    }

    /// Slots whose serving worker is ready.
    var readyCount: Int { slots.filter { $0.current?.state == .ready }.count }

    /// One line: "4/4 workers ready, release /srv/app (reloading)".
    var summary: String {
        var text = "\(readyCount)/\(slots.count) workers ready, release \(releaseState.current.directory)"
        if degraded { text += ", DEGRADED" }
        // Also in systemd's STATUS= (systemctl status), not only in `baton status`.
        if !stateProblems.isEmpty { text += ", STATE ERROR (see baton status)" }
        let looping = slots.filter(\.isCrashLooping).map { String($0.index) }
        if !looping.isEmpty { text += ", crash loop in slot \(looping.joined(separator: ","))" }
        if phase != .running { text += " (\(phase.rawValue))" }
        return text
    }

    /// Sends STATUS= when the summary changed.
    func publishStatus() {
        let line = summary
        guard line != lastStatusLine else { return }
        lastStatusLine = line
        notifier.notify("STATUS=\(line)")
        sayNotifyFailure()
    }

    /// Logs once when messages to the service manager begin to fail.
    func sayNotifyFailure() {
        if let failure = notifier.takeFailure() { logger.warning("\(failure)") }
    }

    /// Tells systemd a step is under way so TimeoutStartSec= does not cut it: a start-up, a
    /// reload, and a reload that waits behind another operation (`systemctl reload` during a
    /// deploy: its ExecReload= runs `baton reload`, which systemd times out as a start).
    func extendTimeout() {
        let reloadWaits = operations.queued.contains { $0.kind == .reload }
        guard phase == .starting || phase == .reloading || reloadWaits else { return }
        notifier.extendTimeout(config.readiness.timeout + config.stop.timeout + .seconds(10))
    }

    // MARK: - Shutdown

    /// SIGTERM: stop every worker gracefully, then exit.
    func beginShutdown() {
        guard phase != .stopping else { return }
        notifier.notify("STOPPING=1\nSTATUS=stopping")
        startQueue.removeAll()
        // A deploy whose commit is being written ends as that write does (commitEndedAtStop).
        if let op = operation, op !== committingOperation {
            releases.append(historyEntry(op, outcome: .interrupted, detail: "baton stopped before it finished"))
            releases.finishOperation()
        }
        performOperations(operations.stop())
        rollout = nil
        // The control socket stays open until the stop ends: `baton status` says "stopping"
        // while workers drain, and operations are refused ("baton is stopping"); closed at once,
        // a draining baton could not be told from a dead one (a metrics audit: exit 3 "cannot
        // reach the daemon" six times in a row while three 4 s requests drained).
        for slot in slots {
            cancelRespawn(slot)
            for worker in slot.workers { stopWorker(worker, reason: .shutdown) }
        }
        drainOrphans()
        stopMolds()
        finishShutdownIfDone()
    }

    func finishShutdownIfDone() {
        guard !stopFinished, phase == .stopping, nothingRuns, committingOperation == nil else { return }
        stopFinished = true
        killEscapedChildren()
        control?.close()
        removeOwnListeningFiles()
        forgetInstance()
        releaseRuntimeLock()
        releases.writeHistoryAtStop()
        logger.info("stopped")
        loop.stop()
    }

    /// Runs `body` on the loop every `interval` until baton stops (the periodic looks at the
    /// runtime files, the accept queues, the OOM counter).
    func repeatUntilStopping(every interval: Duration, _ body: @escaping () -> Void) {
        loop.schedule(after: interval) { [unowned self] in
            guard self.phase != .stopping else { return }
            body()
            self.repeatUntilStopping(every: interval, body)
        }
    }
}
