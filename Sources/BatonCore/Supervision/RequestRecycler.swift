/// Recycling by served requests, for any app (`[rolling] max_requests`, like gunicorn's
/// `--max-requests`): workers report how many requests they served with a private notify field
/// (`X_BATON_REQUESTS=<n>` on `NOTIFY_SOCKET`, beside `STATUS=`), and a worker past its limit is
/// replaced like the restart policy's replacements (zero downtime, gated on readiness).
///
/// Each worker's limit is `max_requests` plus an offset in `[0, max_requests_jitter]` derived
/// from its pid (stable for the worker, different between workers), so workers started together
/// do not all come due together.
///
/// Budget: the recycling engine's (`recycle_concurrency`, `recycle_spacing`), at least
/// `minSpacing` apart, only while every slot has a ready worker (the daemon counts a slot being
/// recycled as one) and no other operation runs; among workers past their limit, the one
/// furthest past goes first. The daemon asks on each report, at each memory check and when a
/// slot serves again, so a count reported while a slot did not serve is not dropped.
public struct RequestRecycler: Sendable, Equatable {
    /// What the recycler knows of one slot's serving worker.
    public struct Worker: Sendable, Equatable {
        /// The slot.
        public var slot: Int
        /// The worker's pid (its jitter offset comes from it).
        public var pid: Int32
        /// Whether it is ready.
        public var ready: Bool
        /// The last count it reported; nil when it never did.
        public var requests: Int?

        /// Creates a worker record.
        public init(slot: Int, pid: Int32, ready: Bool = true, requests: Int?) {
            self.slot = slot
            self.pid = pid
            self.ready = ready
            self.requests = requests
        }
    }

    /// A worker to replace, and the line that says why.
    public struct Decision: Sendable, Equatable {
        /// The slot to recycle.
        public var slot: Int
        /// For the log and the operation's progress.
        public var detail: String
    }

    /// `max_requests`; 0 = off.
    public let maxRequests: Int
    /// `max_requests_jitter`.
    public let jitter: Int
    /// The least time between two recycles by count.
    public let minSpacing: Duration
    /// When the last recycle was ordered.
    public private(set) var lastOrdered: Duration?

    /// Creates a recycler (negative values count as 0).
    public init(maxRequests: Int, jitter: Int = 0, minSpacing: Duration = .zero) {
        self.maxRequests = max(0, maxRequests)
        self.jitter = max(0, jitter)
        self.minSpacing = minSpacing
    }

    /// The limit of the worker with `pid`: `max_requests` + its offset in `[0, jitter]`.
    public func limit(pid: Int32) -> Int {
        guard jitter > 0 else { return maxRequests }
        // A multiplicative hash spreads consecutive pids over the range.
        let mixed = (UInt64(UInt32(bitPattern: pid)) &* 0x9E37_79B9_7F4A_7C15) >> 32
        // In UInt64 and saturating: `jitter + 1` and the sum overflow an Int at Int.max.
        let offset = Int(mixed % (UInt64(jitter) + 1))
        let (sum, overflow) = maxRequests.addingReportingOverflow(offset)
        return overflow ? Int.max : sum
    }

    /// The slot to recycle now, if any; records the order (for the spacing).
    public mutating func decide(now: Duration, workers: [Worker], operationRunning: Bool) -> Decision? {
        guard maxRequests > 0, !operationRunning, !workers.isEmpty, workers.allSatisfy(\.ready) else { return nil }
        if let last = lastOrdered, now - last < minSpacing { return nil }
        let due = workers.compactMap { w -> (Worker, Int, Int)? in
            guard let n = w.requests else { return nil }
            let limit = limit(pid: w.pid)
            return n >= limit ? (w, n, limit) : nil
        }
        guard let (worker, served, limit) = due.max(by: { $0.1 - $0.2 < $1.1 - $1.2 }) else { return nil }
        lastOrdered = now
        return Decision(
            slot: worker.slot, detail: "worker \(worker.pid) served \(served) requests (max_requests \(maxRequests), its limit \(limit))")
    }
}
