import BatonCore
import BatonSystem
import Glibc
import Logging

/// Footprints: a new worker's tree is sampled every second from ready until it settles (the
/// same pids and a steady total over a few samples; see ``FootprintTracker``), so a server that
/// forks its workers after it notified ready is measured whole. The settled figure feeds the
/// new-worker footprint of preflight and `strategy = "auto"`, and is the worker's USS baseline
/// for its growth since boot.
extension Supervisor {
    /// Records a worker's tree when it becomes ready and starts sampling it until it settles.
    func recordReadyFootprint(_ worker: Worker) {
        let (pids, sample) = host.memory.treeMembers(of: worker.pid)
        guard let m = sample else { return }
        worker.memoryReadings.becameReady(m, pids: pids, at: loop.now())
        guard let pss = m.pss else { return }
        memoryMonitor.footprints.workerReady(pid: worker.pid, release: worker.spec.release, pids: pids, pss: pss, now: loop.now())
        scheduleFootprintSample(worker)
    }

    /// The next sample of a settling worker's tree.
    private func scheduleFootprintSample(_ worker: Worker) {
        let token = loop.schedule(after: FootprintTracker.sampleInterval) { [unowned self, weak worker] in
            guard let worker, worker.state != .exited else { return }
            let (pids, sample) = self.host.memory.treeMembers(of: worker.pid)
            // A worker being stopped is going away: its tree is no footprint (a soak audit).
            guard worker.state == .ready, let m = sample, let pss = m.pss else {
                self.memoryMonitor.footprints.workerExited(pid: worker.pid)
                return
            }
            let now = self.loop.now()
            worker.memoryReadings.footprintSampled(pids: pids, uss: m.uss)
            if let footprint = self.memoryMonitor.footprints.sampled(pid: worker.pid, pids: pids, pss: pss, now: now) {
                // Growth since boot counts from the settled tree, not from the lone master at ready.
                // So does the leak-rate history: the lone master's reading at ready would read
                // as growth (copy-on-write erosion counts from here on).
                if let uss = m.uss { worker.memoryReadings.settled(uss: uss, at: now) }
                let after = worker.readyAt.map { Units.formatElapsed(now - $0) } ?? "?"
                self.logger.info(
                    "footprint settled: \(Units.formatSize(footprint)) PSS over \(pids.count) process(es), \(after) after ready",
                    metadata: ["slot": .stringConvertible(worker.slot), "pid": .stringConvertible(worker.pid)])
            } else if self.memoryMonitor.footprints.isSettling(pid: worker.pid) {
                self.scheduleFootprintSample(worker)
            }
        }
        worker.timers.append(token)
    }
}
