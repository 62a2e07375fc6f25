import BatonCore
import BatonSystem
import Glibc
import Logging

/// The memory reservation of `baton preflight --need SIZE --roll-ahead`: held in the daemon
/// (lost when baton restarts) until a deploy starts, `--release-reservation` or the hold
/// passes; sampled every 250 ms from cgroup/meminfo and statm figures; the next grown worker
/// is rolled before the headroom falls under the reservation. The restart policy sees the
/// headroom minus the reservation (``reservedBytes``); surges also leave alone the growth
/// expected while one replacement runs (`MemoryMonitor.surgeKeptBytes`).
extension Supervisor {
    /// How often the headroom is sampled while a reservation is held: meminfo, the cgroup's
    /// usage and each worker tree's statm, a few hundred microseconds of CPU.
    static let reservationInterval: Duration = .milliseconds(250)

    /// Bytes the restart policy and surges must leave alone (0 when nothing is held).
    var reservedBytes: UInt64 { memoryMonitor.reservedBytes }

    /// Starts holding `bytes` for `hold` (replacing any reservation held before).
    func holdReservation(bytes: UInt64, hold: Duration, rolledAhead: Duration?) {
        resetReservation()
        memoryMonitor.hold(
            Reservation(bytes: bytes, margin: config.memory.reservationMargin, now: loop.now(), hold: hold), replacementTime: rolledAhead)
        logger.info(
            "reservation: \(Units.formatSize(bytes)) held (+ \(Units.formatSize(config.memory.reservationMargin)) margin) for \(Units.formatDuration(hold))"
        )
        sampleReservation()
    }

    /// Holds `held` again, as the image before an upgrade held it (its times, its rolls).
    func resumeReservation(_ held: Reservation) {
        memoryMonitor.hold(held, replacementTime: nil)
        logger.info("reservation: \(Units.formatSize(held.bytes)) still held after the upgrade, until its hold passes")
        sampleReservation()
    }

    /// Stops holding; `why` goes to the log. Returns the reservation that was held.
    @discardableResult
    func releaseReservation(_ why: String) -> Reservation? {
        guard let held = memoryMonitor.heldReservation else { return nil }
        resetReservation()
        logger.info("reservation: \(Units.formatSize(held.bytes)) released (\(why)); \(held.rolls) worker\(held.rolls == 1 ? "" : "s") rolled while held")
        return held
    }

    /// Cancels the sampling and forgets the reservation; the measured replacement time stays
    /// (it describes the app, not the reservation).
    private func resetReservation() {
        if let timer = memoryMonitor.resetReservation() { loop.cancel(timer) }
    }

    /// `baton preflight --release-reservation`.
    func requestReleaseReservation(waiter: any OperationWaiter) {
        guard let held = releaseReservation("released by baton preflight --release-reservation") else {
            waiter.finish(.success("no reservation held"))
            return
        }
        let elapsed = Units.formatElapsed(loop.now() - held.heldAt)
        let rolls = "\(held.rolls) worker\(held.rolls == 1 ? "" : "s") rolled while held"
        waiter.finish(.success("reservation of \(Units.formatSize(held.bytes)) released after \(elapsed); \(rolls)"))
    }

    /// The reservation for status, metrics and `preflight --json`.
    func reservationReport() -> ReservationReport? { memoryMonitor.reservationReport(now: loop.now()) }

    /// One sample: the headroom from cheap figures, its fall rate, and a roll when it comes
    /// near the reservation.
    private func sampleReservation() {
        guard let held = memoryMonitor.heldReservation, phase != .stopping else { return }
        let now = loop.now()
        if held.expired(now: now) {
            releaseReservation("the hold of \(Units.formatDuration(held.expiresAt - held.heldAt)) passed")
            return
        }
        memoryMonitor.reservationScheduled(loop.schedule(after: Self.reservationInterval) { [unowned self] in self.sampleReservation() })
        guard let (available, workers) = cheapHeadroom(),
            let sampled = memoryMonitor.reservationSampled(
                at: now, available: available, workers: workers, fittedRate: fittedGrowthRate(), replacementTime: estimatedReplacementTime),
            sampled.roll
        else { return }
        let (trigger, tooling) = (sampled.trigger, sampled.tooling)
        // One replacement at a time; a deploy, reload or policy restart in progress frees or
        // takes memory of its own: the next sample decides again.
        guard !operations.isBusy, !upgradeInProgress else { return }
        rollForReservation(available: available, trigger: trigger, tooling: tooling)
    }

    /// Rolls the serving worker with the largest growth since ready, measured now.
    private func rollForReservation(available: Int64, trigger: UInt64, tooling: UInt64) {
        measureThen("a roll for the reservation") { [unowned self] in self.roll(available: available, trigger: trigger, tooling: tooling) }
    }

    private func roll(available: Int64, trigger: UInt64, tooling: UInt64) {
        guard !operations.isBusy, !upgradeInProgress, phase != .stopping else { return }
        // Grown as the memory rules mean it (1 MiB and 5 %): a multi-app audit saw 8 workers
        // rolled in 18 s, each +280-480 KiB since ready, while another app took the memory;
        // each roll took a slot out of service and freed nothing. Nor, a re-audit saw, when all
        // the growth together cannot close the gap (+2.9 MiB against 22 MiB short).
        let short = UInt64(clamping: Int64(clamping: trigger).subtractingReportingOverflow(available).partialValue)
        let next: WorkerGrowth
        switch RollAhead.reservationRoll(currentGrowth(readyOnly: true), short: short) {
        case .roll(let worker): next = worker
        case .nothingGrown:
            if memoryMonitor.warnNoRoll(.nothingGrown) {
                logger.warning(
                    "reservation: headroom \(Units.formatSignedSize(available)) is under \(Units.formatSize(trigger)) and no worker has grown since it started (by 1 MiB and 5 %): nothing to roll"
                )
            }
            return
        case .cannotClose(let growth):
            if memoryMonitor.warnNoRoll(.cannotClose) {
                logger.warning(
                    "reservation: headroom \(Units.formatSignedSize(available)) is \(Units.formatSize(short)) under \(Units.formatSize(trigger)); restarting every grown worker would free about \(Units.formatSize(growth)) (their growth since ready): nothing rolled, the rest is not the workers' growth"
                )
            }
            return
        }
        let spent = tooling > 0 ? ", less the \(Units.formatSize(tooling)) of it the tooling took" : ""
        logger.info(
            "reservation: headroom \(Units.formatSignedSize(available)) under \(Units.formatSize(trigger)) (reservation + margin + growth over one replacement\(spent)): rolling slot \(next.slot) (+\(Units.formatSize(next.growth)) since ready)"
        )
        let op = makeOperation(kind: .rollAhead, options: nil, uid: nil)
        op.slots = [next.slot]
        op.reason = .rollAhead
        op.keepsReservation = true
        op.measured = true
        submit(op)
    }

    /// A roll made for the held reservation ended.
    func finishReservationRoll(_ op: Operation, replaced: Bool) {
        let took = loop.now() - op.startedAt
        if replaced { memoryMonitor.reservationRolled(took: took) }
        let line = "reservation: slot \(Self.list(op.slots ?? [])) rolled in \(Units.formatElapsed(took))"
        finishOperation(
            op, outcome: replaced ? .succeeded : .failed, detail: replaced ? nil : op.failure?.reason,
            reply: replaced ? .success(line) : .failure("reservation roll failed: \(op.failure?.reason ?? "?")", code: 1))
    }

    /// The tightest headroom from cheap reads (meminfo, the cgroup's usage and limit, and the
    /// workers' PSS carried forward by their statm RSS: no smaps walk), and every worker's
    /// tree's RSS summed (the tooling's use of the reservation is told from the workers' own).
    private func cheapHeadroom() -> (available: Int64, workers: UInt64)? {
        guard let readings = try? host.memory.hostReadings() else { return nil }
        let rss = Dictionary(
            slots.flatMap(\.workers).compactMap { w in host.memory.treeMemory(of: w.pid, detailed: false).map { (w.pid, $0.rss) } },
            uniquingKeysWith: { a, _ in a })
        var pss: UInt64 = 0
        if case .bytes = config.memory.budget {
            pss = memoryMonitor.carriedForwardPSS(
                slots.compactMap(\.current).compactMap { worker in
                    guard let last = worker.memory?.pss, let now = rss[worker.pid] else { return nil }
                    return (worker.pid, last, now)
                })
        }
        let available = Headroom(readings: readings, memory: config.memory, workersPSS: pss).tightest.available
        return (available, rss.values.reduce(0) { $0.addingReportingOverflow($1).partialValue })
    }

    /// The serving workers' summed growth rate: fitted leak rates, else each one's average
    /// since it became ready (over at least `ageFloor`).
    func fittedGrowthRate(ageFloor: Duration = .seconds(10)) -> Double {
        let now = loop.now()
        return slots.compactMap(\.current).reduce(0) { total, w in
            total
                + GrowthForecast.rate(
                    leak: w.history.leakRate, ussAtReady: w.ussAtReady, ussNow: w.memory?.uss, age: now - (w.readyAt ?? w.startedAt),
                    floor: ageFloor)
        }
    }

    /// How long one replacement takes: the last one measured, else the slowest serving
    /// worker's start-to-ready time plus a second (its drain), else 10 s.
    var estimatedReplacementTime: Duration {
        if let measured = memoryMonitor.measuredReplacementTime { return measured }
        let boots = slots.compactMap(\.current).compactMap(\.bootTime)
        return boots.max().map { $0 + .seconds(1) } ?? Reservation.defaultReplacementTime
    }

    /// The growth a roll-ahead plans for while the reservation is held: every serving worker's
    /// rate over ``GrowthForecast/planningWindow(hold:replacementTime:)``, with the replacement
    /// time this roll-ahead measured, else ``estimatedReplacementTime``.
    func expectedGrowth(hold: Duration, measured: Duration? = nil) -> UInt64 {
        let time = measured ?? estimatedReplacementTime
        return GrowthForecast.growth(rate: fittedGrowthRate(), over: GrowthForecast.planningWindow(hold: hold, replacementTime: time))
    }
}
