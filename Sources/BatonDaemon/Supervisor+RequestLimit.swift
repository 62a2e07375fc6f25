import BatonCore
import BatonSystem
import Logging

/// Recycling by served requests (`[rolling] max_requests`, `RequestRecycler` in BatonCore):
/// workers report their count with `X_BATON_REQUESTS=<n>` on their notify socket; a worker
/// past its limit is replaced by a restart-policy operation (reason `max-requests`), one at a
/// time, never during another operation.
extension Supervisor {
    /// The notify field a worker reports its served requests with.
    static let requestsField = "X_BATON_REQUESTS="

    /// The recycler `config` asks for.
    static func requestRecycler(_ config: BatonConfig) -> RequestRecycler {
        RequestRecycler(maxRequests: config.rolling.maxRequests, jitter: config.rolling.maxRequestsJitter)
    }

    /// A worker reported its count (`text`: the field's value).
    func requestsReported(_ worker: Worker, _ text: String) {
        guard let count = Int(text), count >= 0 else {
            logger.warning(
                "\(Self.requestsField)\(ControlProtocol.printable(String(text.prefix(32)))) ignored: not a non-negative integer",
                metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
            return
        }
        worker.requestsServed = count
        recycleByRequestCount()
    }

    /// Orders the replacement of the worker furthest past its limit, if any may go now.
    func recycleByRequestCount() {
        guard requestRecycler.maxRequests > 0, phase == .running else { return }
        let workers = slots.map { slot -> RequestRecycler.Worker in
            guard let w = slot.current else { return RequestRecycler.Worker(slot: slot.index, pid: 0, ready: false, requests: nil) }
            return RequestRecycler.Worker(slot: slot.index, pid: w.pid, ready: w.state == .ready, requests: w.requestsServed)
        }
        let busy = operations.isBusy || upgradeInProgress
        guard let decision = requestRecycler.decide(now: loop.now(), workers: workers, operationRunning: busy) else { return }
        submitPolicyRestart(slot: decision.slot, reason: .maxRequests, log: "restart policy: \(decision.detail)")
    }
}
