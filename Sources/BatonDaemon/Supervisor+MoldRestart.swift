import BatonCore
import BatonSystem

/// A mold that died after it was ready is started again, after its backoff, while its
/// release still runs, and only once it fits in memory.
extension Supervisor {
    /// Starts `spec`'s mold again after `delay`, while its release runs. A mold that does not
    /// fit waits, checked again every `[memory] check_interval` (starts that need it wait too):
    /// a re-audit (3 of 3) saw a restarted mold's load in a nearly full cgroup make the kernel
    /// kill all 4 serving workers, about 1.2 s without a worker each time, while preflight said
    /// "does not fit". The serving workers keep serving meanwhile.
    func scheduleMoldRestart(_ spec: WorkerSpec, after delay: Duration) {
        moldBook.restartTimers[spec.releaseKey] = loop.schedule(after: delay) { [unowned self] in
            self.moldBook.restartTimers[spec.releaseKey] = nil
            guard self.moldBook.mold(for: spec) == nil else { return }
            guard self.moldNeeded(spec) else {
                // A mold audit read "restarts in 1s" of a failed deploy's mold, never restarted.
                self.logger.info("mold of \(spec.release) not restarted: no worker runs on that release any more")
                self.moldBook.heldRestarts.remove(spec.releaseKey)
                return
            }
            if let problem = self.newMoldProblem(release: spec.release) {
                if self.moldBook.heldRestarts.insert(spec.releaseKey).inserted {
                    self.logger.warning(
                        "mold of \(spec.release) not restarted yet: it does not fit (\(problem)); its workers keep serving, and starts wait for it")
                }
                self.scheduleMoldRestart(spec, after: self.config.memory.checkInterval)
                return
            }
            if self.moldBook.heldRestarts.remove(spec.releaseKey) != nil { self.logger.info("mold of \(spec.release) fits again: restarting it") }
            self.moldBook.restartsByRelease[spec.releaseKey, default: 0] += 1
            self.startMold(spec)
        }
    }
}
