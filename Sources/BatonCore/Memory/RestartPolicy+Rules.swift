/// The rules of ``RestartPolicy`` (worker-limit, the total's threshold and leak prediction,
/// age), tried in that order by ``RestartPolicy/tick(_:)``; the type's documentation states
/// each.
extension RestartPolicy {
    /// The first memory rule that picks a worker (worker-limit, threshold, leak), on whatever
    /// figures the tick carries.
    func memoryRule(_ tick: Tick, _ eligible: [Worker], _ inFlight: InFlight) -> (slot: Int, reason: RestartReason, detail: String)? {
        // A worker past `worker_limit` by its growth goes whatever its age (a policy audit: one
        // leaking 512 KiB a request reached 3.2 × the limit, and an OOM kill, before it was
        // `min_worker_age` old); one born over the limit once per slot (one as large replaces
        // it: an audit saw it restarted every 6 s for ever), then only when it grew too.
        let measured = eligible.filter { tick.now - $0.startedAt >= settings.checkInterval && $0.memory?.uss != nil }
        if let limit = settings.workerLimit {
            let over = measured.filter { w in
                guard let uss = w.memory?.uss, uss > limit else { return false }
                if let fresh = w.ussAtReady, fresh < limit { return true }
                // Born over it: once per slot, and again in that slot only when it also grew (a
                // second audit: one born at 40 MiB sat at 101 MiB against a 30 MiB limit).
                return tick.now - w.startedAt >= settings.minWorkerAge
                    && (w.ussAtReady == nil || !bornOverLimit.contains(w.slot) || w.hasGrown)
            }
            if let w = over.max(by: { ($0.memory?.uss ?? 0, -$0.slot) < ($1.memory?.uss ?? 0, -$1.slot) }), let uss = w.memory?.uss {
                return (w.slot, .workerLimit, "USS \(size(uss)) > worker_limit \(size(limit)) (pid \(w.pid))")
            }
        }
        let floor = max(settings.minWorkerAge, settings.checkInterval)
        let grown = measured.filter { tick.now - $0.startedAt >= floor }
        let byUSS = grown.sorted { ($0.memory?.uss ?? 0, -$0.slot) > ($1.memory?.uss ?? 0, -$1.slot) }
        // The total's rules replace only a worker whose growth is part of the total, and only
        // while the growth of all of them could bring the total under the line: memory outside
        // the workers (or their fresh size) over it alone restarts none (a policy audit: 320 MiB
        // outside them had every worker restarted every 12 s, each freeing 2 to 3 MiB).
        let grownByUSS = byUSS.filter(\.hasGrown)
        let reclaimable = grownByUSS.reduce(UInt64(0)) { $0 + $1.growth }
        if let over = overThreshold(tick, inFlight, reclaimable: reclaimable), let w = grownByUSS.first {
            return (w.slot, .memoryThreshold, "\(over); largest USS \(size(w.memory?.uss ?? 0)) (pid \(w.pid))")
        }
        // Fresh PSS/USS come every `smaps_every` checks: a replacement ordered on the figures
        // after this one's would come that much later (an audit: with the default 6 the prediction
        // ordered after the line was crossed).
        let horizon = settings.checkInterval * settings.smapsEvery + (tick.bootTime ?? .zero)
        // Said as the horizon is (a review: "before the next check" was right only with `smaps_every = 1`).
        let within =
            "before the next PSS/USS figures\(tick.bootTime == nil ? "" : " plus a replacement's boot"), in \(Units.formatElapsed(horizon))"
        if let limit = settings.workerLimit {
            let soon = grown.compactMap { w -> (Worker, Duration, LeakRate)? in
                guard let rate = w.history.leakRate, let eta = rate.timeToReach(limit, from: tick.now),
                    eta <= horizon
                else { return nil }
                return (w, eta, rate)
            }
            if let first = soon.min(by: { ($0.1, $0.0.slot) < ($1.1, $1.0.slot) }) {
                let (w, eta, rate) = first
                let growth = (rate.mibPerHour * 10).rounded() / 10
                return (
                    w.slot, .leakPrediction,
                    "USS \(size(w.memory?.uss ?? 0)) growing \(growth) MiB/h reaches worker_limit \(size(limit)) in \(Units.formatElapsed(eta)), \(within) (pid \(w.pid))"
                )
            }
        }
        if let over = overThresholdSoon(tick, inFlight, within: horizon, reclaimable: reclaimable), let w = grownByUSS.first {
            return (w.slot, .leakPrediction, "\(over), \(within); largest USS \(size(w.memory?.uss ?? 0)) (pid \(w.pid))")
        }
        return nil
    }

    /// A description when the workers' growth takes the total past `threshold × budget` within
    /// `horizon`, else nil. The growth is the sum of every fitted rate (shrinking workers offset
    /// growing ones, so one worker's noise does not add up alone); a worker without a fitted
    /// rate adds its clear recent growth (``MemoryHistory/recentGrowth(within:minimumSamples:)``
    /// over ``recentWindow``), if any: a worker leaking megabytes a second is recycled long before
    /// minutes of samples exist. A worker in flight adds nothing: its memory comes back.
    func overThresholdSoon(_ tick: Tick, _ inFlight: InFlight, within horizon: Duration, reclaimable: UInt64) -> String? {
        let rates = tick.workers.filter { !inFlight.slots.contains($0.slot) }.compactMap { w -> Double? in
            w.history.leakRate?.bytesPerSecond ?? w.history.recentGrowth(within: recentWindow)
        }
        let perSecond = rates.reduce(0.0, +)
        guard !rates.isEmpty, perSecond > 0 else { return nil }
        let line = thresholdLine(tick)
        let total = Double(thresholdTotal(tick, inFlight).bytes)
        let seconds = LeakRate.seconds(horizon)
        guard total + perSecond * seconds > line, total - Double(reclaimable) < line else { return nil }
        let eta = Duration.seconds(max(0, (line - total) / perSecond).rounded())
        let perHour = (perSecond * 3600 / 1_048_576 * 10).rounded() / 10
        let growth = perHour >= 3600 ? "\((perSecond / 1_048_576 * 10).rounded() / 10) MiB/s" : "\(perHour) MiB/h"
        return
            "total \(size(UInt64(total))) growing \(growth) reaches \(thresholdPercent) of the \(size(tick.budget.bytes)) budget in \(Units.formatElapsed(eta))"
    }

    /// How far back a worker's recent growth looks: ten checks, or 2 × `smaps_every` + 1 when
    /// longer, so that three detailed reads fall in it (an apps audit: with the default 6, at
    /// most 2 did, and the recent growth was never known).
    var recentWindow: Duration { settings.checkInterval * max(10, 2 * settings.smapsEvery + 1) }

    /// `threshold × budget`, in bytes.
    private func thresholdLine(_ tick: Tick) -> Double { Double(tick.budget.bytes) * settings.threshold }

    /// `threshold` as a whole percentage, for messages.
    private var thresholdPercent: String { "\(Int((settings.threshold * 100).rounded()))%" }

    /// The total the threshold rules measure: the workers' PSS, or the cgroup's working set when
    /// the budget is the cgroup's limit and it is higher, each less what the replacements in
    /// flight free; with both figures, for the words.
    private func thresholdTotal(_ tick: Tick, _ inFlight: InFlight) -> (bytes: UInt64, pss: UInt64, cgroup: UInt64?) {
        let back = inFlight.comingBack
        let all = tick.workers.reduce(UInt64(0)) { $0 + ($1.memory?.pss ?? 0) }
        let pss = all - min(back, all)
        let cgroup = tick.budget.source == .cgroup ? tick.cgroup.map { $0.workingSet - min(back, $0.workingSet) } : nil
        return (max(pss, cgroup ?? 0), pss, cgroup)
    }

    /// ``thresholdTotal(_:_:)`` with its words, when it is over `threshold × budget`; else nil.
    private func totalOverLine(_ tick: Tick, _ inFlight: InFlight) -> (bytes: UInt64, words: String)? {
        let total = thresholdTotal(tick, inFlight)
        guard Double(total.bytes) > thresholdLine(tick) else { return nil }
        let budget = "\(thresholdPercent) of the \(size(tick.budget.bytes)) budget (\(tick.budget.source.rawValue))"
        if let cgroup = total.cgroup, cgroup > total.pss { return (total.bytes, "cgroup working set \(size(cgroup)) > \(budget)") }
        return (total.bytes, "workers' PSS \(size(total.pss)) > \(budget)")
    }

    /// A description of the excess when the total, less what the replacements in flight free,
    /// is over `threshold × budget` and `reclaimable` (what restarting the grown workers frees)
    /// could bring it under, else nil.
    func overThreshold(_ tick: Tick, _ inFlight: InFlight, reclaimable: UInt64) -> String? {
        guard let over = totalOverLine(tick, inFlight), Double(over.bytes - min(reclaimable, over.bytes)) < thresholdLine(tick) else {
            return nil
        }
        return over.words
    }

    /// A description when the total is over `threshold × budget` by more than every worker's
    /// growth since ready, so that no restart could bring it under: the total's rules restart
    /// none, and the supervisor says why (``RestartPolicy/heldOverTheLine``). Else nil.
    func overThresholdBeyondGrowth(_ tick: Tick, _ inFlight: InFlight) -> String? {
        let growth = tick.workers.filter { !inFlight.slots.contains($0.slot) && $0.hasGrown }.reduce(UInt64(0)) { $0 + $1.growth }
        guard let over = totalOverLine(tick, inFlight), Double(over.bytes - min(growth, over.bytes)) >= thresholdLine(tick) else {
            return nil
        }
        return
            "\(over.words), and restarting the workers would free at most \(size(growth)) (their growth since ready): the rest is memory outside the workers or their fresh size"
    }

    /// The most overdue worker by age, if any is due.
    func ageRule(_ tick: Tick, _ eligible: [Worker]) -> (slot: Int, reason: RestartReason, detail: String)? {
        let due = eligible.compactMap { w -> (Worker, Duration, Duration)? in
            guard let limit = ageLimit(slot: w.slot) else { return nil }
            let age = tick.now - w.startedAt
            return age >= limit ? (w, age - limit, limit) : nil
        }
        guard let most = due.max(by: { ($0.1, -$0.0.slot) < ($1.1, -$1.0.slot) }) else { return nil }
        let (w, overdue, limit) = most
        let age = rounded(overdue + limit)
        let offset = rounded(limit - (settings.maxAge ?? .zero))
        return (
            w.slot, .age,
            "age \(Units.formatDuration(age)) ≥ max_age \(Units.formatDuration(settings.maxAge ?? .zero)) + splay offset \(Units.formatDuration(offset)) (pid \(w.pid))"
        )
    }

    /// A size for messages.
    func size(_ bytes: UInt64) -> String { Units.formatSize(bytes) }

    /// A duration rounded down to whole seconds, for messages.
    func rounded(_ d: Duration) -> Duration { .seconds(d.components.seconds) }
}
