import BatonCore
import BatonSystem
import Glibc

/// The surge width and strategy of a running rollout, planned again before every step from
/// the memory measured then (`RolloutPlanner`, BatonCore): a deploy that starts with replace
/// surges once the workers it drained gave their memory back, and narrows when memory gets
/// tight.
extension Supervisor {
    /// `word` as a shell would need it to be one argument: itself when it is made of
    /// `A-Za-z0-9_@%+=:,./-`, else in single quotes, or, when it holds hidden characters, in
    /// bash's `$'…'` with them escaped (a re-audit: `'a\nb'` stood for a newline and for a
    /// backslash and an n alike).
    static func shellWord(_ word: String) -> String {
        let plain = "_@%+=:,./-".utf8
        if !word.isEmpty, word.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || plain.contains($0) }) {
            return word
        }
        guard word.unicodeScalars.contains(where: ControlProtocol.isHidden) else {
            return "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: #"'\''"#) + "'"
        }
        var out = "$'"
        for scalar in word.unicodeScalars {
            switch scalar {
            case "\\": out += #"\\"#
            case "'": out += #"\'"#
            case "\n": out += #"\n"#
            case "\t": out += #"\t"#
            // `\xHH` is a byte in bash: only below 0x80 is it the character (a re-audit: U+0085
            // came back as the byte 0x85).
            case _ where ControlProtocol.isHidden(scalar):
                let hex = String(scalar.value, radix: 16)
                out += scalar.value >= 0x80 ? #"\u"# + String(repeating: "0", count: max(0, 4 - hex.count)) + hex : #"\x"# + (hex.count < 2 ? "0" : "") + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "'"
    }

    /// The planner for a rollout with `options` and `strategy`, parsed from them when the
    /// request came in (nil: the config's settings).
    func rolloutPlanner(_ options: DeployOptions?, strategy: DeployStrategy?) -> RolloutPlanner {
        let strategy = strategy ?? config.deploy.strategy
        let width = options?.maxSurge.map { RolloutPlanner.Width.fixed(min($0, slots.count)) } ?? config.deploy.surgeWidth
        followUsableCPUs()
        return RolloutPlanner(strategy: strategy, maxSurge: width, maxUnavailable: config.deploy.maxUnavailable, bootBudget: bootBudget.boots)
    }

    /// The CPUs baton may use, read now; the boot budget follows a change (`systemctl
    /// set-property … CPUQuota=`, `taskset -a -p`), said once per change. A CPU audit: the
    /// budget kept the count read at start while the recycling budget read it again.
    @discardableResult
    func followUsableCPUs() -> Int {
        let usable = Self.onlineCPUs
        guard usable != bootBudget.cpus else { return usable }
        logger.info("baton may use \(usable) CPU\(usable == 1 ? "" : "s") now (\(bootBudget.cpus) before): boots are planned for \(usable)")
        bootBudget.follow(cpus: usable)
        return usable
    }

    /// Says once at start when baton plans its boots for fewer CPUs than the host has.
    func sayCPUsWhenLimited() {
        let (online, affinity, quota) = (CPUCount.online, CPUCount.affinity, CPUCount.quota)
        let usable = CPUQuota.usable(affinity: affinity, quota: quota)
        guard usable < online else { return }
        let quotaText = quota.map { ", a cgroup CPU quota of \(Int(($0 * 100).rounded())) % of one CPU" } ?? ""
        logger.info("boots are planned for \(usable) of the host's \(online) CPUs (CPU affinity \(affinity)\(quotaText))")
    }

    /// The CPUs baton may use (its affinity and its cgroup's quota, ``CPUCount``): the boot
    /// budget is one boot per CPU until boots were measured.
    static var onlineCPUs: Int { CPUCount.usable }

    /// What the planner needs now: headroom from the host and cgroup figures read now and the
    /// workers' last PSS sample (no smaps walk), the new worker's footprint, and the slots in
    /// replacement; the commit charge per worker is `op`'s, read once per operation (see
    /// ``commitPerWorker(_:_:)``). Headroom nil when memory cannot be read. `fresh`: the first
    /// step of a rollout not begun, which a running one's slots in flight and pending do not
    /// concern (a drain audit: a dry run during a deploy of 3 workers said "4 slots at once",
    /// its 3 slots in flight plus the 1 more that fit).
    func rolloutFigures(release: String?, for op: Operation? = nil, fresh: Bool = false) -> RolloutPlanner.Figures {
        let running = fresh ? nil : rollout
        let inFlight = running?.inFlightSlots.count ?? 0
        let pending = running.map { $0.phases.filter { $0 == .pending }.count } ?? slots.count
        // A new worker not ready yet has not reached its footprint: the headroom does not show it.
        // Nor does one not spawned yet: a replace slot whose old worker just drained is planned
        // again before its start runs, and the memory the drain gave back is that worker's.
        var booting = Set(slots.filter { $0.replacement.map { $0.state != .ready } ?? false }.map(\.index))
        var unstarted = 0
        if let running {
            for (slot, phase) in zip(running.slots, running.phases) where phase == .startingAfterDrain && slots[slot].replacement == nil {
                booting.insert(slot)
                unstarted += 1
            }
        }
        let descriptors = descriptorRoom(unstarted: unstarted)
        guard let readings = try? host.memory.hostReadings() else {
            return RolloutPlanner.Figures(
                headroom: nil, footprint: nil, inFlight: inFlight, booting: booting.count, pending: pending, descriptors: descriptors)
        }
        let (headroomNow, footprint) = workersHeadroom(readings, release: release)
        var headroom = headroomNow
        // A release whose mold has not started yet: it loads the application before the first
        // new worker (the plan of a deploy's first step).
        let mold = Int64(clamping: newMoldBytes(release: release ?? releaseState.current.directory))
        if mold > 0 { headroom.limits = headroom.limits.map { HeadroomLimit(kind: $0.kind, available: $0.available - mold) } }
        return RolloutPlanner.Figures(
            headroom: headroom, footprint: footprint, commitPerWorker: commitPerWorker(readings, .once(op)), inFlight: inFlight,
            booting: booting.count, pending: pending, descriptors: descriptors)
    }

    /// The headroom new workers of `release` may take beside the live workers and molds, and
    /// their footprint (never the running workers' median: they have grown; unknown means
    /// replace). Against `[memory] budget` every live worker counts: draining ones and a
    /// previous baton's orphans still hold their memory, and one not measured since it started
    /// (a replacement) counts as a footprint.
    private func workersHeadroom(_ readings: MemoryReadings, release: String?) -> (Headroom, footprint: UInt64?) {
        let footprint = memoryMonitor.footprints.estimate(release: release ?? releaseState.current.directory, configured: config.deploy.workerFootprint)?.bytes
        return (surgeHeadroom(readings, workersPSS: liveWorkersPSS(footprint: footprint) + moldsPSS, footprint: footprint), footprint)
    }

    /// The PSS of every worker not gone (serving, starting, draining) and of a previous baton's
    /// orphans, from their last samples: all hold memory of the budget's. One not measured
    /// since it started (a replacement) counts as `footprint`. Molds are not in it.
    func liveWorkersPSS(footprint: UInt64?) -> UInt64 {
        let live = slots.flatMap { [$0.current, $0.replacement].compactMap { $0 } + $0.draining }
        return live.reduce(UInt64(0)) { $0 + ($1.memory?.pss ?? footprint ?? 0) } + orphansPSS
    }

    /// What the serving workers are expected to grow while one step of a rollout runs (a
    /// replacement, then the stability window): their summed growth rate over that time. A
    /// memory audit (2 of 2, workers leaking 30-40 MiB/s in all): an auto surge sized without
    /// it started 3 new workers beside 3 old ones that kept growing, and the kernel killed
    /// two serving workers.
    ///
    /// A young worker's average since ready counts from 2 s, not 10: a re-audit's deploy right
    /// after a policy restart met workers 2-6 s old leaking 15 MiB/s each, counted at a fifth
    /// of that. Warm-up growth read as a leak only narrows the width (the safe side).
    func growthDuringStep() -> UInt64 {
        GrowthForecast.growth(rate: fittedGrowthRate(ageFloor: .seconds(2)), over: estimatedReplacementTime + config.deploy.stabilityWindow)
    }

    /// baton's descriptor table now (nil when unknown), `unstarted` new workers planned.
    func descriptorRoom(unstarted: Int = 0) -> DescriptorRoom? {
        host.descriptorUse().map { DescriptorRoom(open: $0.open, limit: $0.limit, listeners: listeners.count, unstarted: unstarted) }
    }

    /// Why a control or metrics client just accepted may not keep its descriptor: fewer than
    /// one worker's start needs (``DescriptorRoom/startNeed``) would stay free. A starved audit,
    /// `LimitNOFILE=64`: 64 idle control connections left a crashed worker's slot empty for
    /// 15 s (`Too many open files` at each start), 40 metrics connections of any local user for
    /// 31 s, and a replace step ended DEGRADED: the descriptors a drain gave back went to new
    /// clients first. nil when there is room or the table cannot be read.
    func clientDescriptorShortage() -> String? {
        guard let room = descriptorRoom(), room.limit - room.open < room.startNeed else { return nil }
        return "baton keeps its last \(room.startNeed) descriptors to start workers (\(room.summary))"
    }

    /// In mold mode, why a new mold for `release` must not start now (`need …, have … (binding:
    /// …)`); nil when it fits, or memory cannot be read. A release without a ready mold loads
    /// the application in a new mold before its first worker, whatever the strategy. A mold
    /// audit: a deploy went on where preflight said "does not fit", the new mold's load
    /// OOM-killed the serving mold and workers, and the rollback failed too (degraded).
    func newMoldProblem(release: String) -> String? {
        let mold = newMoldBytes(release: release)
        guard mold > 0, let readings = try? host.memory.hostReadings() else { return nil }
        let headroom = workersHeadroom(readings, release: release).0
        let binding = headroom.binding(memoryNeed: mold, commitNeed: mold)
        guard binding.available < Int64(clamping: mold) else { return nil }
        return "need \(Units.formatSize(mold)) (new mold), have \(Units.formatSignedSize(binding.available)) (binding: \(binding.kind.name))"
    }

    /// The headroom new workers may take beside workers of `workersPSS`: a held reservation,
    /// the growth the serving workers are expected to add while one step runs, and the margin
    /// kept after a recent OOM kill are not theirs to spend (a rollout's, a paced take-over's).
    func surgeHeadroom(_ readings: MemoryReadings, workersPSS: UInt64, footprint: UInt64?) -> Headroom {
        var headroom = Headroom(readings: readings, memory: config.memory, workersPSS: workersPSS)
        // A held reservation's trigger counts that growth already.
        let reserved = max(memoryMonitor.surgeKeptBytes, memoryMonitor.reservedBytes + growthDuringStep())
        let kept = Int64(clamping: reserved + oomMargin(footprint: footprint))
        if kept > 0 { headroom.limits = headroom.limits.map { HeadroomLimit(kind: $0.kind, available: $0.available - kept) } }
        return headroom
    }

    /// How ``commitPerWorker(_:_:)`` uses an operation's figure.
    enum CommitChargeRead {
        /// Read now and kept nowhere (no operation to keep it).
        case now
        /// The operation's figure: read at its first plan, reused by every replan, which would
        /// otherwise walk every worker's maps at each step of a rollout.
        case once(for: Operation)
        /// Read again now and kept as the operation's figure (a roll-ahead's preflight after
        /// each roll: the rolls changed the workers).
        case again(for: Operation)

        /// `.once(for: op)`, or `.now` without an operation.
        static func once(_ op: Operation?) -> Self { op.map { .once(for: $0) } ?? .now }
        /// `.again(for: op)`, or `.now` without an operation.
        static func again(_ op: Operation?) -> Self { op.map { .again(for: $0) } ?? .now }
    }

    /// The serving workers' median commit charge, as preflight counts it: it binds only under
    /// `vm.overcommit_memory = 2`, so nil otherwise. Read off the loop with the workers' memory
    /// before each decision (``measureThen(_:_:)``: reading it walks every worker's maps); `read`
    /// says whether an operation's figure is reused, or taken from that reading and kept.
    func commitPerWorker(_ readings: MemoryReadings, _ read: CommitChargeRead) -> UInt64? {
        guard readings.overcommit == .strict else { return nil }
        if case .once(let op) = read, op.commitPerWorker != .notRead { return op.commitPerWorker.bytes }
        let median = memoryMonitor.commitPerWorker
        switch read {
        case .now: break
        case .once(let op), .again(let op): op.commitPerWorker = median.map { .known($0) } ?? .unknown
        }
        return median
    }

    /// Plans the running rollout's next step once an event was applied (`rollout` holds the
    /// machine after it, so the slots in flight are counted as they are now) and returns what
    /// may start; says so in the operation's progress when the strategy changes (the width
    /// follows the slots in flight).
    func replanRollout(_ machine: inout RollingRestart) -> [RollingRestart.Action] {
        guard var planner = rolloutPlanner, !machine.isFinished else { return [] }
        // Boots measured since the rollout began (its canary's, say) may widen or narrow it.
        planner.bootBudget = max(1, bootBudget.boots)
        rolloutPlanner = planner
        let step = planner.step(rolloutFigures(release: rolloutSpec?.release, for: operation))
        // A hold starts nothing: the strategy stays (a descriptors check under replace said
        // "next: surge", then "next: replace", at every slot).
        if step.holds { return machine.replan(strategy: machine.stepStrategy, width: step.width) }
        let switched = step.strategy != machine.stepStrategy
        if switched { operation?.report("next: \(Self.describe(step)) (\(step.reason))") }
        return machine.replan(strategy: step.strategy, width: step.width)
    }

    /// "surge, 3 slots at once" / "replace, 1 slot at once".
    static func describe(_ step: RolloutPlanner.Step) -> String {
        "\(step.strategy.rawValue), \(step.width) slot\(step.width == 1 ? "" : "s") at once"
    }

    /// The plan `--dry-run` prints.
    func plan(kind: Operation.Kind, target: Release, options: DeployOptions, strategy: DeployStrategy?) -> [String] {
        let step = firstStep(options, strategy: strategy)
        // The order the deploy would take now, the most grown worker first (a docs audit: the
        // plan named slot 0 as the canary, and the deploy then began with slot 1 or 2).
        let order = slotsByGrowth()
        var lines = [
            "\(kind.rawValue): \(releaseState.current.directory) → \(target.directory)",
            // Each argument quoted when it needs it, its hidden characters escaped (a names audit:
            // a newline in one printed a line of its own, an ESC reached the terminal, and where
            // one argument ended could not be told).
            "command: \((target.command ?? config.app.command).map(Self.shellWord).joined(separator: " "))",
            "strategy: \(Self.describe(step)) (\(step.reason)), planned again at every step, canary \(config.deploy.canary ? "slot \(order.first ?? 0) first" : "off")",
        ]
        for slot in order.compactMap({ i in slots.first { $0.index == i } }) {
            let pid = slot.current.map { String($0.pid) } ?? "-"
            lines.append("slot \(slot.index): pid \(pid) on \(slot.spec.release) → new worker on \(target.directory)")
        }
        return lines
    }

    /// The first step of a rollout with `options`: surge or replace, how many slots at once,
    /// and why (`RolloutPlanner`), from the workers' last sample: every caller measured them
    /// just before (``measureThen(_:_:)``). `op`: the operation the rollout belongs to, which
    /// keeps the commit charge read now.
    func firstStep(_ options: DeployOptions?, strategy: DeployStrategy?, for op: Operation? = nil) -> RolloutPlanner.Step {
        rolloutPlanner(options, strategy: strategy).step(rolloutFigures(release: options?.release, for: op, fresh: true))
    }

    /// Every serving worker's USS growth since ready, from the last sample (`readyOnly`: only
    /// workers that are ready now).
    func currentGrowth(readyOnly: Bool = false) -> [WorkerGrowth] {
        slots.compactMap { slot -> WorkerGrowth? in
            guard let w = slot.current, !readyOnly || w.state == .ready, let now = w.memory?.uss else { return nil }
            return WorkerGrowth(slot: slot.index, pid: w.pid, ussAtReady: w.ussAtReady ?? now, ussNow: now)
        }
    }

    /// Slots of the serving workers, largest USS growth since ready first (a deploy restarts
    /// the most bloated workers first), from the last sample (``measureThen(_:_:)``); grown as
    /// the memory rules count it (1 MiB and 5 %), the rest in slot order. A few pages more are
    /// noise: they picked the canary of two idle workers at random (a flaky test, 1 of 1143,
    /// whose canary was to be slot 0).
    func slotsByGrowth() -> [Int] {
        let ordered = RollAhead.order(currentGrowth().filter(\.hasGrown)).map(\.slot)
        return ordered + slots.map(\.index).filter { !ordered.contains($0) }
    }
}
