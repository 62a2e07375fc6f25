import BatonCore
import BatonSystem
import Glibc
import Logging

/// Recycling by served requests (`[rolling] max_requests`, `RequestRecycler` in BatonCore):
/// workers report their count with `X_BATON_REQUESTS=<n>` on their notify socket; a worker
/// past its limit is recycled (reason `max-requests`) through the recycling engine, under its
/// budget and spacing, never during a deploy, reload or rollback.
extension Supervisor {
    /// The notify field a worker reports its served requests with.
    static let requestsField = "X_BATON_REQUESTS="
    /// sd_notify's field that extends a starting worker's readiness timeout.
    static let extendTimeoutField = "EXTEND_TIMEOUT_USEC="

    /// The recycler `config` asks for.
    static func requestRecycler(_ config: BatonConfig) -> RequestRecycler {
        RequestRecycler(maxRequests: config.rolling.maxRequests, jitter: config.rolling.maxRequestsJitter)
    }

    /// Processes of one worker's tree whose counts are kept apart; past it, those gone are
    /// summed into one.
    static let requestCountersKept = 64

    /// Process `pid` of `worker`'s tree reported its count (`text`: the field's value). Each
    /// process's count is its own, the worker's is their sum (an apps audit: under gunicorn
    /// `-w 2` each inner worker reported its own count, read as 1000, 700, 1050, 750, and each
    /// slot served about 4,700 requests against `max_requests 2000`).
    func requestsReported(_ worker: Worker, _ text: String, from pid: pid_t) {
        guard let count = Int(text), count >= 0 else {
            // Digits only and still no Int: a non-negative integer, too large (an apps audit).
            let why = !text.isEmpty && text.utf8.allSatisfy { (0x30...0x39).contains($0) } ? "too large (over \(Int.max))" : "not a non-negative integer"
            warnNotify(worker, "\(Self.requestsField)\(ControlProtocol.printable(String(text.prefix(32)))) ignored: \(why)")
            return
        }
        // Summed without overflow (each count may be up to Int.max).
        worker.requestCounts[pid] = count
        if worker.requestCounts.count > Self.requestCountersKept {
            for (gone, last) in worker.requestCounts where gone != pid && host.processes.startTime(of: gone) == nil {
                worker.retiredRequests = worker.retiredRequests.saturatingAdd(last)
                worker.requestCounts[gone] = nil
            }
        }
        worker.requestsServed = worker.requestCounts.values.reduce(worker.retiredRequests) { $0.saturatingAdd($1) }
        sawRequestCounts = true  // the app sends them: an idle spell later is no silence
        recycleByRequestCount()
    }

    /// Orders the recycle of every worker past its limit, furthest past first (a slot already
    /// queued or recycling is left out).
    func recycleByRequestCount() {
        guard requestRecycler.maxRequests > 0, phase == .running || phase == .restarting else { return }
        sayNoRequestCounts()
        var workers = slots.map { slot -> RequestRecycler.Worker in
            // A slot the engine holds counts as serving, and not as due again: under replace it
            // has no worker until its new one is ready, and that gap is the budget's to bound.
            let held = recycling.holds(slot: slot.index)
            guard let w = slot.current else { return RequestRecycler.Worker(slot: slot.index, pid: 0, ready: held, requests: nil) }
            return RequestRecycler.Worker(slot: slot.index, pid: w.pid, ready: held || w.state == .ready, requests: held ? nil : w.requestsServed)
        }
        let busy = recyclingBlocked
        for _ in workers.indices {
            guard let decision = requestRecycler.decide(now: loop.now(), workers: workers, operationRunning: busy) else { return }
            workers[decision.slot].requests = nil
            submitPolicyRestart(slot: decision.slot, reason: .maxRequests, log: "restart policy: \(decision.detail)")
        }
    }

    /// How long ready workers may go without reporting a count before that is said.
    static let requestCountGrace = Duration.seconds(60)

    /// Says once that `max_requests` is set and no ready worker reported a count within
    /// ``requestCountGrace`` of becoming ready (a habits audit: `max_requests = 100` with
    /// gunicorn, 73,564 requests later no restart and no line; check-config said ok). Again
    /// after a reload, which may change the command, unless a worker reported one since baton
    /// started (a re-audit: an idle app that reports every 64 requests was warned about).
    private func sayNoRequestCounts() {
        guard !saidNoRequestCounts, !sawRequestCounts else { return }
        let ready = slots.compactMap(\.current).filter { $0.state == .ready }
        guard !ready.isEmpty, ready.allSatisfy({ $0.requestsServed == nil }),
            let first = ready.compactMap(\.readyAt).min(), loop.now() - first >= Self.requestCountGrace
        else { return }
        saidNoRequestCounts = true
        logger.warning(
            "[rolling] max_requests = \(requestRecycler.maxRequests), but no worker reported its served requests (\(Self.requestsField)N on its notify socket) \(Units.formatDuration(Self.requestCountGrace)) after it was ready: no worker is recycled by count (the app must send it)"
        )
    }
}
