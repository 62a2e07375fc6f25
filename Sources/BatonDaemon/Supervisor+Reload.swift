import BatonCore
import BatonSystem
import Glibc
import Logging

/// Reloads waiting to run: a reload during a reload is coalesced into one more
/// pass after the current one (never dropped), and every requester hears the
/// result of the pass that covered its request.
struct ReloadQueue {
    /// Clients waiting for the pass in progress.
    var current: [ControlConnection] = []
    /// Whether one more pass is requested.
    var pending = false
    /// Clients waiting for that pass.
    var pendingWaiters: [ControlConnection] = []

    /// Replies to everyone waiting with a failure.
    mutating func failAll(control: ControlServer?, reason: String) {
        for c in current + pendingWaiters { c.finish(.failure(reason)) }
        current.removeAll()
        pendingWaiters.removeAll()
        pending = false
    }
}

extension Supervisor {
    /// SIGHUP, `baton reload`, systemd's ExecReload=: re-read and validate
    /// the config, then replace every worker one by one (surge).
    func requestReload(waiter: ControlConnection?) {
        if phase == .stopping {
            waiter?.finish(.failure("baton is stopping"))
            return
        }
        if phase == .reloading || phase == .starting {
            reload.pending = true
            if let waiter {
                reload.pendingWaiters.append(waiter)
                waiter.send(.progress(phase == .starting ? "waiting for start-up to finish" : "a reload is in progress: queued one more pass after it"))
            }
            logger.info("reload queued behind the \(phase == .starting ? "start-up" : "reload in progress")")
            return
        }
        if let waiter { reload.current.append(waiter) }
        beginReload()
    }

    private func beginReload() {
        let newConfig: BatonConfig
        let spec: WorkerSpec
        do {
            newConfig = try options.reloadConfig?() ?? config
            spec = try makeSpec(newConfig)
            try checkReloadable(newConfig)
        } catch {
            let message = "reload failed, nothing changed: \(error)"
            logger.error("\(message)")
            finishReload(ok: false, message: message)
            return
        }
        for change in restartOnlyChanges(newConfig) {
            logger.warning("\(change) changed: takes effect only after a restart of baton (systemctl restart)")
            for w in reload.current { w.send(.progress("\(change) changed: needs a restart of baton, not a reload")) }
        }
        previousConfig = config
        config = Self.applying(newConfig, keepingRestartOnlyFrom: config)
        phase = .reloading
        notifier.reloading(status: "reloading: rolling restart of \(slots.count) workers")
        extendTimeout()
        reloadSpec = spec
        logger.info("reload: rolling restart of \(slots.count) workers (surge, one at a time)")
        var restart = RollingRestart(slots: slots.map(\.index), strategy: .surge)
        let actions = restart.start()
        rollout = restart
        perform(actions)
    }

    /// Worker count changes need more than a rolling restart; refuse them on reload for now.
    private func checkReloadable(_ newConfig: BatonConfig) throws {
        if newConfig.app.workers != config.app.workers {
            throw DaemonError("app.workers changed from \(config.app.workers) to \(newConfig.app.workers): restart baton to change the number of workers")
        }
        if newConfig.app.name != config.app.name {
            throw DaemonError("app.name changed: restart baton to rename the app")
        }
    }

    private func restartOnlyChanges(_ newConfig: BatonConfig) -> [String] {
        var changes: [String] = []
        if newConfig.listen != config.listen { changes.append("[listen]") }
        if newConfig.control != config.control { changes.append("[control]") }
        return changes
    }

    static func applying(_ newConfig: BatonConfig, keepingRestartOnlyFrom old: BatonConfig) -> BatonConfig {
        var merged = newConfig
        merged.listen = old.listen
        merged.control = old.control
        return merged
    }

    /// Feeds an event to the rollout and performs what it says.
    func rolloutEvent(_ event: (inout RollingRestart) -> [RollingRestart.Action]) {
        guard var restart = rollout else { return }
        let actions = event(&restart)
        rollout = restart
        perform(actions)
    }

    private func perform(_ actions: [RollingRestart.Action]) {
        for action in actions {
            switch action {
            case .startNew(let index):
                let slot = slots[index]
                progress("slot \(index): starting a new worker")
                startWorker(slot, role: .replacement, reason: "reload")
            case .drainOld(let index):
                let slot = slots[index]
                if let replacement = slot.replacement {
                    // The new worker serves; the old one drains.
                    slot.replacement = nil
                    if let old = slot.current {
                        slot.draining.append(old)
                        progress("slot \(index): pid \(old.pid) → \(replacement.pid) ready, draining \(old.pid)")
                        stopWorker(old, reason: "reload")
                    }
                    slot.current = replacement
                    slot.spec = replacement.spec
                    slot.lastRestartReason = "reload"
                    if slot.draining.isEmpty { rolloutEvent { $0.oldWorkerExited(slot: index) } }
                } else if let old = slot.current {
                    slot.current = nil
                    slot.draining.append(old)
                    stopWorker(old, reason: "reload")
                } else {
                    rolloutEvent { $0.oldWorkerExited(slot: index) }
                }
            case .finished(let outcome):
                rollout = nil
                switch outcome {
                case .succeeded:
                    if let spec = reloadSpec { for slot in slots { slot.spec = spec } }
                    finishReload(ok: true, message: "reload finished: \(slots.count) workers replaced")
                case .failed(let slot, let reason, let replaced):
                    if let previous = previousConfig, replaced.isEmpty { config = previous }
                    let done = replaced.isEmpty ? "nothing changed" : "slots \(replaced.map(String.init).joined(separator: ",")) already replaced"
                    finishReload(ok: false, message: "reload failed: new worker for slot \(slot) did not become ready (\(reason)); old workers keep serving; \(done)")
                }
            }
        }
    }

    private func progress(_ message: String) {
        logger.info("\(message)")
        extendTimeout()
        for waiter in reload.current { waiter.send(.progress(message)) }
    }

    private func finishReload(ok: Bool, message: String) {
        reloadSpec = nil
        previousConfig = nil
        if phase == .reloading { phase = .running }
        if ok { logger.info("\(message)") } else { logger.error("\(message)") }
        for waiter in reload.current { waiter.finish(ok ? .success(message) : .failure(message)) }
        reload.current.removeAll()
        // READY=1 ends the RELOADING=1 state even when the reload failed:
        // the old workers still serve.
        if sentReady { notifier.ready(status: summary) }
        lastStatusLine = summary
        if reload.pending {
            reload.pending = false
            reload.current = reload.pendingWaiters
            reload.pendingWaiters.removeAll()
            logger.info("running the queued reload")
            beginReload()
        }
    }

    /// Start-up finished: a reload queued during it runs now.
    func runQueuedReloadAfterStart() {
        guard phase == .running, reload.pending else { return }
        reload.pending = false
        reload.current = reload.pendingWaiters
        reload.pendingWaiters.removeAll()
        beginReload()
    }
}
