import BatonCore
import BatonSystem
import Glibc
import Logging

/// A worker being promoted to be the next mold.
final class Promotion {
    /// The worker (out of its slot and the loop already).
    let worker: Worker
    /// Its channel.
    let channel: MoldChannel
    /// Gives up when it does not answer within `stop.timeout`.
    var timer: EventLoop.Token?

    init(worker: Worker, channel: MoldChannel) {
        self.worker = worker
        self.channel = channel
    }
}

/// Refork (docs/MOLD.md, "Refork"): with `[mold] refork_after_requests` or `refork_after` set,
/// workers are forked with a channel of their own; once one has served that many requests (as
/// it reports with X_BATON_REQUESTS=) or is that old, and every slot serves, it is promoted to be
/// the release's next mold, so that what the app warmed at run time is shared too. Its slot gets
/// a worker from the current mold at once; once it answers `promoted`, the current mold is
/// retired and every slot is rolled onto the new one by a reload (same readiness gating, zero
/// failed requests). Once per release.
extension Supervisor {
    /// Whether refork is configured (mold mode only).
    var reforkEnabled: Bool { moldMode && (config.mold.reforkAfterRequests > 0 || config.mold.reforkAfter != nil) }

    /// With refork on, a forked worker of `spec`'s release (until that release was reforked)
    /// gets the worker's end of a channel of its own, right after the listening sockets
    /// (`BATON_MOLD_FD`); baton keeps its end (returned) until the worker is promoted or gone.
    /// The worker's end goes to `workerEnd`, whose owner closes it once the spawn is done. The
    /// spawned worker's release, not the serving one's: a deploy from a release already
    /// reforked gave the new release's workers none, and it never reforked (a mold audit).
    func addPromotionChannel(_ request: inout SpawnRequest, spec: WorkerSpec, workerEnd: inout OwnedDescriptor?) throws -> MoldChannel? {
        guard reforkEnabled, !moldBook.reforked.contains(spec.releaseKey) else { return nil }
        let pair = try MoldChannel.pair()
        request.passFDs.append(pair.otherEnd.rawValue)
        request.environment.append("BATON_MOLD_FD=\(3 + listeners.count)")
        workerEnd = consume pair.otherEnd
        return pair.channel
    }

    /// Checks once a second whether a worker is due for promotion: from when a mold is ready,
    /// and from a reload that turns refork on (a mold audit: the ready mold was kept, and
    /// nothing started the checks).
    func scheduleReforkCheck() {
        guard reforkEnabled, moldBook.reforkTimer == nil else { return }
        moldBook.reforkTimer = loop.schedule(after: .seconds(1)) { [unowned self] in
            self.moldBook.reforkTimer = nil
            guard self.reforkEnabled else { return }
            self.checkRefork()
            if self.phase != .stopping { self.scheduleReforkCheck() }
        }
    }

    private func checkRefork() {
        let live = Set(slots.flatMap(\.workers).map(\.pid))
        for pid in moldBook.promotable.keys where !live.contains(pid) { moldBook.promotable[pid] = nil }
        guard phase == .running, operation == nil, moldBook.promoting == nil, let spec = slots.first?.spec,
            !moldBook.reforked.contains(spec.releaseKey), moldBook.mold(for: spec)?.state == .ready,
            slots.allSatisfy({ $0.current?.state == .ready })
        else { return }
        let now = loop.now()
        let due = slots.compactMap(\.current).first { w in
            guard w.spec == spec, moldBook.promotable[w.pid] != nil else { return false }
            let requests = config.mold.reforkAfterRequests > 0 && (w.requestsServed ?? 0) >= config.mold.reforkAfterRequests
            let age = config.mold.reforkAfter.map { now - (w.readyAt ?? w.startedAt) >= $0 } ?? false
            return requests || age
        }
        guard let worker = due, let channel = moldBook.promotable.removeValue(forKey: worker.pid) else { return }
        promote(worker, channel: channel)
    }

    private func promote(_ worker: Worker, channel: MoldChannel) {
        moldBook.reforked.insert(worker.spec.releaseKey)
        let slot = slots[worker.slot]
        logger.info(
            "refork: promoting worker \(worker.pid) to be the next mold; slot \(slot.index) gets a new worker",
            metadata: ["release": .string(worker.spec.release)])
        // From here it is the next mold, not a worker: out of its slot and of the loop.
        slot.current = nil
        for t in worker.timers { loop.cancel(t) }
        worker.timers.removeAll()
        unwatch(worker)
        let promotion = Promotion(worker: worker, channel: channel)
        moldBook.promoting = promotion
        do {
            try channel.sendPromote()
            try loop.register(fd: channel.fd, events: .readable) { [unowned self] _ in self.promotionAnswered() }
        } catch {
            promotionFailed("\(error)")
            startWorker(slot, role: .current, reason: RestartCause(.reload, detail: "refork"))
            return
        }
        let timeout = config.stop.timeout
        promotion.timer = loop.schedule(after: timeout) { [unowned self] in
            self.promotionFailed("no answer within \(Units.formatDuration(timeout))")
        }
        startWorker(slot, role: .current, reason: RestartCause(.reload, detail: "refork"))
    }

    private func promotionAnswered() {
        guard let promotion = moldBook.promoting else { return }
        do {
            guard try promotion.channel.receivePromoted() == true else { return }
        } catch {
            promotionFailed("\(error)")
            return
        }
        endPromotion(promotion)
        let worker = promotion.worker
        // What the worker held moves to the mold, each still owned once: the process (its
        // pidfd), the notify socket and its path, the output pipe's reader.
        let mold = Mold(spec: worker.spec, process: worker.process, link: promotion.channel, startedAt: loop.now())
        mold.state = .ready
        mold.readyAt = loop.now()
        mold.ownedNotify = worker.ownedNotify.take()
        mold.notifyPath = worker.notifyPath
        mold.ownedOutput = worker.ownedOutput.take()
        worker.notifyPath = nil
        for old in moldBook.molds where old.spec == mold.spec { retireMold(old) }
        moldBook.molds.append(mold)
        do {
            try watchMold(mold)
        } catch {
            logger.error("refork: cannot watch the new mold \(mold.pid): \(error)")
        }
        // A deploy or rollback begun while the worker drained replaces every slot anyway (its
        // own release's workers come from this mold if it goes back to this release): a reload
        // queued behind it restarted every worker of the release it brought once more, for
        // nothing (a mold audit).
        if operation?.kind.isDeploy == true || queue.contains(where: { $0.kind.isDeploy }) {
            logger.info(
                "refork: worker \(mold.pid) is the mold now; the deploy in progress replaces every slot, so no reload follows",
                metadata: ["release": .string(mold.spec.release)])
        } else {
            logger.info(
                "refork: worker \(mold.pid) is the mold now; rolling every slot onto it", metadata: ["release": .string(mold.spec.release)])
            requestReload(waiter: nil)
        }
        publishStatus()
    }

    private func endPromotion(_ promotion: Promotion) {
        if let t = promotion.timer { loop.cancel(t) }
        loop.unregister(fd: promotion.channel.fd)
        moldBook.promoting = nil
    }

    /// The worker could not be promoted: it drains as an old worker of its slot (stop signal,
    /// SIGKILL after `stop.timeout`, reaped through its pidfd); the current mold stays.
    func promotionFailed(_ reason: String) {
        guard let promotion = moldBook.promoting else { return }
        endPromotion(promotion)
        let worker = promotion.worker
        logger.warning("refork: worker \(worker.pid) was not promoted (\(reason)); it is stopped and the current mold stays")
        slots[worker.slot].draining.append(worker)
        do {
            try watch(worker)
        } catch {
            logger.error("refork: cannot watch worker \(worker.pid): \(error)")
        }
        stopWorker(worker, reason: .abandoned)
    }
}
