import BatonCore
import BatonSystem
import Glibc

/// A take-over that would not fit twice the workers is paced (`TakeOverPace`, BatonCore): the
/// new workers start only as far as memory allows beside the orphans, and orphans are drained
/// as the new ones serve, or one first when nothing else can move.
extension Supervisor {
    /// At start-up with orphans: how many new workers fit beside them now. Their footprint is
    /// `[deploy] worker_footprint`, else the orphans' median PSS (the same app, most likely);
    /// with memory or footprint unknown, or room for every slot, no pace (all start at once).
    func planTakeOverPace() {
        guard !takeOver.orphans.isEmpty, let readings = try? host.memory.hostReadings() else { return }
        let orphanPSS = takeOver.orphans.compactMap { host.memory.treeMemory(of: $0.pid, detailed: true)?.pss }.sorted()
        guard let footprint = config.deploy.workerFootprint ?? (orphanPSS.isEmpty ? nil : orphanPSS[orphanPSS.count / 2]) else { return }
        let headroom = surgeHeadroom(readings, workersPSS: orphanPSS.reduce(0, +), footprint: footprint)
        let planner = RolloutPlanner(strategy: .auto, maxSurge: .auto, maxUnavailable: 1, bootBudget: slots.count)
        let figures = RolloutPlanner.Figures(headroom: headroom, footprint: footprint, pending: slots.count)
        guard let fit = planner.fitting(figures), fit < slots.count else { return }
        takeOver.pace = TakeOverPace(extra: fit)
        logger.warning(
            "take-over: \(slots.count) new workers of \(Units.formatSize(footprint)) do not fit beside the \(takeOver.orphans.count) orphaned ones (room for \(fit)): they replace them as memory allows, an orphan drained as each new worker serves"
        )
    }

    /// The pace's step now: drains the orphans it says, returns how many new workers may
    /// start (nil: no pace, or the take-over is over).
    func paceTakeOver() -> Int? {
        guard let pace = takeOver.pace, phase == .starting, !takeOver.draining else { return nil }
        let serving = takeOver.orphans.filter { $0.killTimer == nil }
        let newWorkers = slots.compactMap(\.current).filter { $0.state == .starting || $0.state == .ready }
        let state = TakeOverPace.State(
            slots: slots.count, newRunning: newWorkers.count, newReady: newWorkers.filter { $0.state == .ready }.count,
            orphansServing: serving.count, orphansDraining: takeOver.orphans.count - serving.count, orphansGone: takeOver.orphansGone)
        let step = pace.step(state)
        // Orphans the dead baton was already stopping first (a crash audit saw a serving one
        // drained before them), then those of slots whose new worker serves, then those of no
        // known slot, then by slot.
        let readySlots = Set(newWorkers.filter { $0.state == .ready }.map(\.slot))
        func rank(_ o: OrphanWorker) -> (Int, Int) {
            (o.wasDraining ? 0 : readySlots.contains(o.slot) ? 1 : o.slot < 0 ? 2 : 3, o.slot)
        }
        let order = serving.sorted { rank($0) < rank($1) }
        for orphan in order.prefix(step.drain) { drainOrphan(orphan) }
        return step.start
    }
}
