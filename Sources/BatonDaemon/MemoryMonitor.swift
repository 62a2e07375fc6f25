import BatonCore
import BatonSystem
import Glibc

/// The memory monitor's state, in one owner: the restart policy and the footprint tracker
/// (BatonCore machines that keep their own rules), the periodic sampling's cadence, the OOM
/// watch, the held reservation's samples and baselines, and what `memory.mergeable` already
/// told the operator. The supervisor's memory extensions (`Supervisor+Memory`, `+Reservation`,
/// `+OOM`, `+MemoryMerge`) schedule, log and act; every change to this state goes through
/// the narrow methods here, which decide without the loop, a process or /proc (unit-tested
/// with readings the tests make up). Each worker's own readings are its ``WorkerMemory``,
/// written through ``apply(_:detailed:to:now:)``. On the loop thread only.
final class MemoryMonitor {
    /// The periodic restart policy (age, memory threshold, worker limit, leak prediction).
    var policy: RestartPolicy
    /// The policy's ``RestartPolicy/heldOverTheLine`` was logged (it is said once, when it begins).
    var saidHeldOverTheLine = false
    /// The configured budget last said to be over the limit the kernel enforces (nil: none).
    var saidBudgetOver: UInt64?
    /// Why the host's memory figures could not be read at the last check, as said (nil: read).
    var hostMemoryProblem: String?
    /// Footprints of recently started workers, by release.
    var footprints = FootprintTracker()
    /// Periodic checks so far (smaps_rollup every `smaps_every`-th).
    private(set) var ticks = 0
    /// The serving workers' median commit charge at the last measurement before a decision
    /// (`Supervisor.measureThen`), read under `vm.overcommit_memory = 2` only; nil otherwise.
    var commitPerWorker: UInt64?
    /// Whether a memory read is running off the loop (periodic checks skip a turn meanwhile):
    /// a periodic one, or one an operation, a preflight or a dry run waits for.
    var readRunning: Bool { readsRunning > 0 }
    private var readsRunning = 0
    /// Kernel OOM kills in baton's cgroup: counter, attribution, pending replacements.
    let oom = OOMWatch()
    /// The reservation of `preflight --roll-ahead`, while one is held.
    private var reservation = ReservationState()
    /// The kernel's refusal of PR_SET_MEMORY_MERGE, once a worker's spawn reported one.
    private(set) var mergeRefusal: String?

    /// A monitor starting with `policy`.
    init(policy: RestartPolicy) { self.policy = policy }

    // MARK: - Sampling

    /// The next periodic check: nil when the last read still runs (this one is skipped),
    /// else whether it is a detailed one (every `smapsEvery`-th).
    func nextTick(smapsEvery: Int) -> Bool? {
        guard !readRunning else { return nil }
        ticks += 1
        return ticks % max(1, smapsEvery) == 0
    }

    /// A read went off the loop.
    func readStarted() { readsRunning += 1 }

    /// That read is back.
    func readFinished() { readsRunning -= 1 }

    /// Each worker's tree memory by pid (with `ksm` and `detailed`, its KSM figures too); safe
    /// on any thread (only reads through `reader`).
    static func read(_ pids: [pid_t], detailed: Bool, ksm: Bool = false, with reader: any MemoryReading) -> [pid_t: MemorySample] {
        var readings: [pid_t: MemorySample] = [:]
        for pid in pids {
            guard var m = reader.treeMemory(of: pid, detailed: detailed) else { continue }
            if ksm, detailed { m.ksm = reader.treeKSM(of: pid) }
            readings[pid] = m
        }
        return readings
    }

    /// Stores readings on the workers still alive (one that exited while they were taken is
    /// left alone).
    func apply(_ readings: [pid_t: MemorySample], detailed: Bool, to workers: [Worker], now: Duration) {
        for worker in workers where worker.state != .exited {
            guard let m = readings[worker.pid] else { continue }
            worker.memoryReadings.record(m, detailed: detailed, ready: worker.state == .ready, at: now)
        }
    }

    // MARK: - memory.mergeable

    /// Notes the kernel's refusal of PR_SET_MEMORY_MERGE; true the first time (to be logged
    /// once: every later worker is refused the same way).
    func mergeRefused(_ line: String) -> Bool {
        guard mergeRefusal == nil else { return false }
        mergeRefusal = line
        return true
    }

    /// Why nothing merges, if so: the refusal noted and ksmd's state (`run`: the content of
    /// /sys/kernel/mm/ksm/run).
    func mergeNotes(run: String?) -> [String] {
        [mergeRefusal, MemoryMerge.daemonNote(run: run)].compactMap { $0 }
    }

    // MARK: - The reservation

    /// The reservation held, if any.
    var heldReservation: Reservation? { reservation.held }

    /// Bytes the restart policy and surges must leave alone (0 when nothing is held).
    var reservedBytes: UInt64 {
        guard let held = reservation.held else { return 0 }
        return held.bytes + held.margin
    }

    /// What the tooling the reservation is held for took of it at the last sample (0 when
    /// nothing is held): in the cgroup's working set, and not the workers'.
    var reservationToolingBytes: UInt64 { reservation.held == nil ? 0 : reservation.lastTooling }

    /// Bytes a surge must leave alone while a reservation is held: the last sample's trigger
    /// (reservation + margin + the growth expected while one replacement runs), at least the
    /// reservation and margin. A roll starts because that growth is coming; a surge that
    /// spends it takes the reservation (0 when nothing is held: releasing a reservation resets
    /// its state, the last trigger with it).
    var surgeKeptBytes: UInt64 { max(reservedBytes, reservation.lastTrigger ?? 0) }

    /// How long the last replacement took, when one was measured.
    var measuredReplacementTime: Duration? { reservation.replacementTime }

    /// Forgets the reservation and returns its sampling timer (to cancel); the measured
    /// replacement time stays (it describes the app, not the reservation).
    func resetReservation() -> EventLoop.Token? {
        let timer = reservation.timer
        reservation = ReservationState(replacementTime: reservation.replacementTime)
        return timer
    }

    /// Starts holding `held` (after ``resetReservation()``); `replacementTime`: one measured
    /// by the roll-ahead that made room.
    func hold(_ held: Reservation, replacementTime: Duration?) {
        if let replacementTime { reservation.replacementTime = replacementTime }
        reservation.held = held
    }

    /// The timer of the next reservation sample.
    func reservationScheduled(_ timer: EventLoop.Token) { reservation.timer = timer }

    /// One reservation sample: records the headroom, its fall rate (at least `fittedRate`, the
    /// workers' growth), and the trigger for `replacementTime`. The memory the tooling took of
    /// the reservation (``Reservation/toolingUse(available:workers:)``, from `workers`, the
    /// workers' memory) is neither a shortage nor a fall. Returns the trigger (of the headroom
    /// as it is), what the tooling took, and whether to roll a worker now; nil when nothing is held.
    func reservationSampled(
        at now: Duration, available: Int64, workers: UInt64, fittedRate: Double, replacementTime: Duration
    ) -> (trigger: UInt64, tooling: UInt64, roll: Bool)? {
        guard var held = reservation.held else { return nil }
        let tooling = held.toolingUse(available: available, workers: workers)
        reservation.held = held
        let counted = available.addingReportingOverflow(Int64(clamping: tooling)).partialValue
        reservation.trend.append(at: now, available: counted)
        let rate = max(reservation.trend.fallRate, fittedRate)
        let full = held.trigger(growthRate: rate, replacementTime: replacementTime)
        let trigger = full > tooling ? full - tooling : 0
        reservation.lastHeadroom = available
        reservation.lastTrigger = trigger
        reservation.lastTooling = tooling
        return (trigger, tooling, held.shouldRoll(available: counted, growthRate: rate, replacementTime: replacementTime))
    }

    /// Whether to warn that the held reservation rolls nothing (`why`: nothing grew, or the
    /// growth cannot close the gap): once per reason and reservation, until a roll.
    func warnNoRoll(_ why: NoRoll) -> Bool {
        reservation.warnedNoRoll.insert(why).inserted
    }

    /// A roll for the reservation replaced its worker in `took`.
    func reservationRolled(took: Duration) {
        reservation.replacementTime = took
        reservation.held?.rolls += 1
        reservation.trend.reset()
        reservation.warnedNoRoll = []
    }

    /// The serving workers' PSS carried forward by their statm RSS (no smaps walk): per pid,
    /// the last PSS plus the RSS grown since that PSS was first seen (PSS moves with RSS for
    /// the private memory a leak adds). Workers not listed are forgotten.
    func carriedForwardPSS(_ workers: [(pid: pid_t, pss: UInt64, rss: UInt64)]) -> UInt64 {
        var baselines: [pid_t: (pss: UInt64, rss: UInt64)] = [:]
        var total: UInt64 = 0
        for w in workers {
            let base = reservation.baselines[w.pid].flatMap { $0.pss == w.pss ? $0 : nil } ?? (pss: w.pss, rss: w.rss)
            baselines[w.pid] = base
            total += base.pss + (w.rss > base.rss ? w.rss - base.rss : 0)
        }
        reservation.baselines = baselines
        return total
    }

    /// The reservation for status, metrics and `preflight --json`.
    func reservationReport(now: Duration) -> ReservationReport? {
        guard let held = reservation.held else { return nil }
        return ReservationReport(
            bytes: held.bytes, marginBytes: held.margin, remainingSeconds: Supervisor.seconds(held.remaining(now: now)),
            rolls: held.rolls, headroomBytes: reservation.lastHeadroom, triggerBytes: reservation.lastTrigger)
    }
}

/// What the held reservation needs between its samples (``MemoryMonitor``'s).
struct ReservationState {
    /// The reservation held, if any.
    var held: Reservation?
    /// The sampling timer while one is held.
    var timer: EventLoop.Token?
    /// The headroom's course over the last samples.
    var trend = HeadroomTrend()
    /// How long the last replacement took (request to old worker gone); the trigger counts the
    /// growth expected over one.
    var replacementTime: Duration?
    /// Per worker pid: its last PSS and the RSS read when that PSS was first seen.
    var baselines: [pid_t: (pss: UInt64, rss: UInt64)] = [:]
    /// The headroom and trigger of the last sample (for status and metrics).
    var lastHeadroom: Int64?
    var lastTrigger: UInt64?
    /// What the tooling took of it at the last sample.
    var lastTooling: UInt64 = 0
    /// The "nothing rolled" warnings logged for this reservation since its last roll.
    var warnedNoRoll: Set<NoRoll> = []
}

/// Why the held reservation rolled nothing at a sample that called for a roll.
enum NoRoll: Hashable {
    /// No worker grew by 1 MiB and 5 %.
    case nothingGrown
    /// The grown workers' growth together is less than the headroom is short.
    case cannotClose
}
