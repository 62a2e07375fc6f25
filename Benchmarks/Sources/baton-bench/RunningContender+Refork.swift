import BatonSystem
import BatonTestSupport
import Glibc

/// The refork rows (`baton+puma(mold,refork)`, `baton+python(mold,refork)`): the steady
/// window must measure workers forked from the promoted mold, not from the first one.
extension RunningContender {
    /// `[mold] refork_after_requests` of the refork rows: at the bench's load (thousands of
    /// requests a second over 4 workers) a worker reaches it during the wrk warm-up, and each
    /// release is reforked once (the deploys' new releases too, in the restart window).
    static let reforkAfterRequests = 1000

    /// Refork rows: waits, at most `timeout` seconds, until baton promoted a worker that served
    /// when it became ready to be the mold, rolled every slot onto it (a reload that finished after
    /// the promotion) and serves with the new mold alone, no operation running and every slot ready
    /// with a worker that was not there at the start. Returns the seconds it waited; nil for the
    /// other rows (nothing to wait for). Throws if that did not happen in time.
    func awaitRefork(timeout: Double = 90) throws -> Double? {
        guard contender.isRefork, let baton else { return nil }
        let start = monotonicNow()
        let deadline = start + .milliseconds(Int64(timeout * 1000))
        while monotonicNow() < deadline, master.exitCode == nil {
            let lines = master.stderrLines
            if let promoted = lines.lastIndex(where: { $0.contains("is the mold now") }),
                lines[promoted...].contains(where: { $0.contains("reload finished") }),
                let status = try? baton.status(), status.operation == nil,
                let molds = status.molds, molds.count == 1, molds[0].state == "ready", initialWorkers.contains(molds[0].pid),
                status.workers.count == workers,
                status.workers.allSatisfy({ $0.state == "ready" && !initialWorkers.contains($0.pid) })
            {
                return seconds(monotonicNow() - start)
            }
            pause(0.1)
        }
        let log = master.stderrLines.suffix(20).joined(separator: "\n")
        throw HarnessError("\(contender.rawValue): no worker promoted and every slot rolled onto it within \(fixed(timeout, 0)) s:\n\(log)")
    }
}
