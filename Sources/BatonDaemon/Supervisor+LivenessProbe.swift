import BatonCore
import BatonSystem
import Glibc
import Logging

/// The liveness probe (`readiness.liveness_probe`): a command run against each ready worker
/// every `liveness_interval` (with `BATON_WORKER_PID`, in the release folder, as the worker's
/// user), like the exec readiness probe; `liveness_failures` failed runs in a row (non-zero
/// exit, or killed after `probe_timeout`) replace the worker, reason `liveness-probe`. It sees
/// what the stopped-process check cannot: a worker that runs but no longer answers.
extension Supervisor {
    /// Arms the probe of each worker that has none yet: a worker's first run comes
    /// `liveness_interval` after it became ready (called then), or, for workers already ready
    /// when a reload turned the probe on, after the first liveness check that saw them.
    func armLivenessProbes(_ workers: [Worker]) {
        guard !config.readiness.livenessProbe.isEmpty else { return }
        for worker in workers where worker.livenessProbe == nil {
            worker.livenessProbe = LivenessProbeRecord(threshold: config.readiness.livenessFailures)
            scheduleLivenessProbe(worker)
        }
    }

    private func scheduleLivenessProbe(_ worker: Worker) {
        // Weak: the worker may be gone when the timer fires; the timer is not in its list, which
        // would grow by one every interval for the worker's whole life.
        loop.schedule(after: config.readiness.livenessInterval) { [unowned self, weak worker] in
            if let worker { self.runLivenessProbe(worker) }
        }
    }

    private func runLivenessProbe(_ worker: Worker) {
        guard phase != .stopping, worker.isReadyAndNotStopping, worker.probe == nil else { return }
        let argv = config.readiness.livenessProbe
        guard !argv.isEmpty else {
            worker.livenessProbe = nil  // turned off by a reload; armed again if it comes back
            return
        }
        do {
            // Its exit goes through probeExited (which also serves the readiness probe, and which
            // the stray reaper knows): that calls livenessProbeExited for a worker past starting.
            // Its timeout timer is not kept in the worker's list, which would grow by one every
            // interval for the worker's whole life.
            _ = try spawnProbe(argv, for: worker)
        } catch {
            // baton's failure, not the worker's: not counted.
            logger.warning("liveness probe could not start: \(error)", metadata: ["slot": .stringConvertible(worker.slot)])
            if worker.probe == nil { scheduleLivenessProbe(worker) }
        }
    }

    /// A liveness probe run ended (`probeExited` reaped it).
    ///
    /// A CPU audit (12 busy loops on 2 cores): every worker's probe timed out while it waited for
    /// a CPU, all 6 workers were replaced within 1.8 s, and their replacements, as starved, never
    /// became ready: nothing served for 25 s. So a run killed at `probe_timeout` that spent half
    /// of it waiting for a CPU is not counted, and the only worker serving gets its failures
    /// counted once more before it is replaced (a re-audit: never replacing it left one stopped
    /// worker unreplaced for good).
    func livenessProbeExited(_ worker: Worker, exit: CBatonLinuxShim.Exit) {
        guard worker.isReadyAndNotStopping, var record = worker.livenessProbe else { return }
        let metadata: Logger.Metadata = ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)]
        let timeout = config.readiness.probeTimeout
        let outcome = worker.probeTimeoutWait == nil ? "\(exit)" : "timed out after \(Units.formatDuration(timeout))"
        if let waited = worker.probeTimeoutWait, waited >= Self.seconds(timeout) / 2 {
            // Summed over its processes' threads, and up to when it was killed: may pass the timeout.
            logger.warning(
                "liveness probe \(outcome); its processes waited \(Units.formatElapsed(.milliseconds(Int64(waited * 1000)))) in all for a CPU (the host is busy): not counted",
                metadata: metadata)
            scheduleLivenessProbe(worker)
            return
        }
        let succeeded = exit == .exited(0)
        if succeeded { worker.livenessGraceGiven = false }
        let replace = record.record(succeeded: succeeded)
        worker.livenessProbe = record
        if !succeeded {
            logger.warning("liveness probe failed (\(outcome)): \(record.failures) of \(record.threshold) in a row", metadata: metadata)
        }
        guard replace else {
            scheduleLivenessProbe(worker)
            return
        }
        let othersServing = slots.contains { $0.index != worker.slot && $0.current?.isReadyAndNotStopping == true }
        guard othersServing || worker.livenessGraceGiven else {
            worker.livenessGraceGiven = true
            worker.livenessProbe = LivenessProbeRecord(threshold: record.threshold)
            logger.warning(
                "liveness probe: the only worker serving failed \(record.failures) in a row (the host stalled?): its failures count from now, once; failed again, it is replaced",
                metadata: metadata)
            scheduleLivenessProbe(worker)
            return
        }
        replaceUnresponsive(worker, reason: .livenessProbe, detail: "failed its liveness probe \(record.failures) times in a row (last: \(outcome))")
    }
}
