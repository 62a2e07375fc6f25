import BatonSystem
import BatonTestSupport
import Glibc

/// Latency and throughput of a time window.
struct WindowStats: Codable, Sendable {
    var seconds: Double
    var requests: Int
    var throughput: Double
    var p50: Double
    var p99: Double
    var max: Double
    /// The longest time (ms) in the window in which no request completed at all.
    var stall: Double

    init(_ samples: [LatencySample], from: Duration, to: Duration) {
        let window = samples.filter { $0.end >= from && $0.end < to }
        let inside = window.map(\.latency)
        let ends = [from] + window.map(\.end).sorted() + [to]
        stall = zip(ends, ends.dropFirst()).map { a, b in Double((b - a).components.attoseconds) / 1e15 + Double((b - a).components.seconds) * 1000 }.max() ?? 0
        let summary = LatencySummary(inside)
        let (whole, atto) = (to - from).components
        seconds = Double(whole) + Double(atto) / 1e18
        requests = summary.requests
        throughput = seconds > 0 ? Double(requests) / seconds : 0
        p50 = summary.p50
        p99 = summary.p99
        max = summary.max
    }
}

/// Time series of one run for the plots (time in seconds from the start of the load).
struct RunSeries: Codable, Sendable {
    /// Bucket starts.
    var t: [Double] = []
    var p50: [Double] = []
    var p99: [Double] = []
    var max: [Double] = []
    var failures: [Int] = []
    /// Memory sample times and total PSS (MiB) of the supervisor's tree.
    var memoryT: [Double] = []
    var pssMiB: [Double] = []
    /// Trigger times.
    var triggers: [Double] = []
}

/// What one load run (restart or recycling) measured.
struct LoadRun: Codable, Sendable {
    var contender: String
    var variant: String
    var repetition: Int
    var steady: WindowStats
    /// The restart window: first trigger until every worker is new after the last (or the deadline).
    var window: WindowStats
    /// Per trigger: from it until every worker present at it was replaced (or the window's
    /// end): which restart the window's latency came from (baton: the surge deploy, then the
    /// replace deploy).
    var triggerWindows: [WindowStats]?
    /// Failed requests inside the window and over the whole run, by kind.
    var failedInWindow: Int
    var failedTotal: Int
    var failures: [String: Int]
    var idleCloseRetries: Int
    /// Per trigger: seconds until every worker present at the trigger was gone and N
    /// workers that had not answered before had answered; nil = not within the run.
    var triggerSeconds: [Double?]
    /// `baton deploy` exit codes (baton only; nil = still running at the end).
    var deployExitCodes: [Int32?]
    /// First trigger until every worker is new after the last trigger.
    var allNewSeconds: Double?
    var steadyPSSMiB: Double
    var peakPSSMiB: Double
    /// Worker replacements seen (pids of direct children that went away), recycling runs.
    var workersReplaced: Int
    /// wrk's steady figures just before the load (restart runs; nil without wrk).
    var wrk: WrkStats?
    /// What the peak total PSS was made of, and the lowest total after the steady window began
    /// (the peak minus the lowest is what leaked and overlapped beyond the baseline).
    var peak: TreeComposition?
    var lowest: TreeComposition?
    /// Refork rows: seconds the run waited after the warm-up for the refork to complete.
    var reforkWaitSeconds: Double?
    var series: RunSeries

    var completed: [Bool] { triggerSeconds.map { $0 != nil } }
}

/// One sample of a supervisor's tree, broken down: the supervisor and each direct child's tree.
struct TreeComposition: Codable, Sendable {
    var totalMiB: Double
    var supervisorMiB: Double
    /// Each direct child's tree PSS, largest first (a mold is one of them).
    var childrenMiB: [Double]

    init(_ sample: TreeSample) {
        totalMiB = round3(Double(sample.totalPSS) / 1_048_576)
        supervisorMiB = round3(Double(sample.supervisorPSS) / 1_048_576)
        childrenMiB = sample.parts.values.sorted(by: >).map { round3(Double($0) / 1_048_576) }
    }

    /// "398 = 6 + 4 children 120, 95, 90, 87".
    var summary: String {
        "\(fixed(totalMiB, 0)) = \(fixed(supervisorMiB, 0)) + \(childrenMiB.count) children \(childrenMiB.map { fixed($0, 0) }.joined(separator: ", "))"
    }
}

/// Runs load against a started contender, fires `triggers` (seconds after the steady window
/// starts), waits until each completed or `maxWait` after the last, and measures.
struct LoadRunDriver {
    var connections: Int
    var steadySeconds: Double
    /// Gaps between triggers (first trigger at the end of the steady window).
    var triggerGaps: [Double]
    var maxWait: Double
    /// A peer whose workers did not change for this long after its first restart finished dropped the rest.
    var quietSeconds: Double = 10
    /// For recycling runs: no triggers, just `duration` seconds of load after the steady window.
    var duration: Double = 0
    /// Seconds of wrk before the load (0: none; then a 1 s warm-up of the load client).
    var wrkSeconds = 0

    func run(_ running: RunningContender, app: AppVariant, repetition: Int) throws -> LoadRun {
        let variant = app.name
        let loadedBytes = (UInt64(max(app.memoryMiB, 1)) << 20) * 4 / 5
        let sampler = TreeSampler(root: running.master.pid, loadedBytes: loadedBytes)
        // wrk first: a second opinion on the steady figures, and the workers' warm-up.
        let wrk = wrkSeconds > 0 ? WrkStats.measure(port: running.port, connections: connections, seconds: wrkSeconds) : nil
        let load = LoadClient(port: running.port, connections: connections, maxDuration: .seconds(600), recordLatencies: true, pace: .zero)
        let loadStart = monotonicNow()
        pause(wrkSeconds > 0 ? 0.5 : 1)  // warm-up: connections open, first requests served
        // Refork rows: the steady window starts once every slot runs on the promoted mold.
        let reforkWait = try running.awaitRefork()
        let steadyStart = monotonicNow()
        pause(steadySeconds)
        var triggerTimes: [Duration] = []
        var oldChildren: [Set<pid_t>] = []
        if duration == 0 {
            for n in 0...triggerGaps.count {
                if n > 0 { pause(triggerGaps[n - 1]) }
                oldChildren.append(Set(running.children))
                triggerTimes.append(monotonicNow())
                try running.trigger(n)
            }
        }
        if duration > 0 { pause(duration) }
        // Wait until no worker from any trigger time is left and N have loaded the app (and
        // baton's deploys ended). A peer whose workers stay the same for `quietSeconds` with
        // the first trigger done has dropped the later one (uWSGI ignores a second chain reload).
        let deadline = (triggerTimes.last ?? monotonicNow()) + .milliseconds(Int64(maxWait * 1000))
        var deployEnds: [Duration?] = Array(repeating: nil, count: triggerTimes.count)
        var lastChange = monotonicNow()
        var lastChildren = Set(running.children)
        while monotonicNow() < deadline, !triggerTimes.isEmpty {
            let now = TreeSampler.sample(root: running.master.pid, loadedBytes: loadedBytes)
            let children = Set(now.children)
            if children != lastChildren || now.loaded.count < running.loadedChildren {
                lastChange = now.at
                lastChildren = children
            }
            let gone = oldChildren.allSatisfy { $0.isDisjoint(with: children) } && now.loaded.count >= running.loadedChildren
            let codes = running.deployExitCodes(waitingUpTo: 0)
            for (k, code) in codes.enumerated() where code != nil && deployEnds[k] == nil { deployEnds[k] = now.at }
            if gone && codes.allSatisfy({ $0 != nil }) { break }
            let firstDone = oldChildren[0].isDisjoint(with: children)
            if !running.contender.isBaton, firstDone, seconds(now.at - lastChange) > quietSeconds, now.at > triggerTimes.last! + .seconds(2) {
                break
            }
            pause(0.1)
        }
        pause(1)  // tail
        let report = load.stop()
        let end = monotonicNow()
        let memory = sampler.stop()
        let codes = running.deployExitCodes(waitingUpTo: 0)

        let samples = report.samples
        var triggerSeconds: [Double?] = []
        for (k, at) in triggerTimes.enumerated() {
            var done = Self.allNew(after: at, old: oldChildren[k], memory: memory, workers: running.loadedChildren)
            if running.contender.isBaton {
                // baton's own word: the deploy exited 0.
                let ok = k < codes.count && codes[k] == 0
                done = ok ? max(done ?? 0, deployEnds[k].map { seconds($0 - at) } ?? 0) : nil
            }
            triggerSeconds.append(done)
        }
        let firstTrigger = triggerTimes.first ?? steadyStart + .milliseconds(Int64(steadySeconds * 1000))
        // Until the last trigger completed; a trigger that never did: until the load stopped.
        let windowEnd: Duration =
            triggerTimes.isEmpty
            ? end
            : min(end, zip(triggerTimes, triggerSeconds).map { t, s in s.map { t + .milliseconds(Int64($0 * 1000)) } ?? end }.max() ?? end)
        let steadyPSS = memory.filter { $0.at >= steadyStart && $0.at < firstTrigger }.map { Double($0.totalPSS) / 1_048_576 }
        let allNew = triggerSeconds.allSatisfy { $0 != nil } && !triggerTimes.isEmpty ? seconds(windowEnd - firstTrigger) : nil
        let failedInWindow = report.failureEvents.filter { $0.at >= firstTrigger && $0.at <= windowEnd }.count
        var replaced = Set<pid_t>()
        var previous = Set(memory.first?.children ?? [])
        for m in memory {
            let now = Set(m.children)
            replaced.formUnion(previous.subtracting(now))
            previous = now
        }
        return LoadRun(
            contender: running.contender.rawValue, variant: variant, repetition: repetition,
            steady: WindowStats(samples, from: steadyStart, to: firstTrigger),
            window: WindowStats(samples, from: firstTrigger, to: windowEnd),
            triggerWindows: zip(triggerTimes, triggerSeconds).map { at, done in
                WindowStats(samples, from: at, to: done.map { at + .milliseconds(Int64($0 * 1000)) } ?? windowEnd)
            },
            failedInWindow: failedInWindow, failedTotal: report.failed, failures: report.failures,
            idleCloseRetries: report.idleCloseRetries, triggerSeconds: triggerSeconds,
            deployExitCodes: running.contender.isBaton ? codes : [], allNewSeconds: allNew,
            steadyPSSMiB: steadyPSS.isEmpty ? 0 : steadyPSS.reduce(0, +) / Double(steadyPSS.count),
            peakPSSMiB: (memory.map(\.totalPSS).max()).map { Double($0) / 1_048_576 } ?? 0,
            workersReplaced: replaced.count, wrk: wrk,
            peak: memory.max { $0.totalPSS < $1.totalPSS }.map(TreeComposition.init),
            lowest: memory.filter { $0.at >= steadyStart }.min { $0.totalPSS < $1.totalPSS }.map(TreeComposition.init),
            reforkWaitSeconds: reforkWait,
            series: Self.series(samples: samples, failures: report.failureEvents.map(\.at), memory: memory, start: loadStart, end: end, triggers: triggerTimes))
    }

    /// Seconds from `at` until every worker in `old` is gone and N workers have loaded
    /// the app; nil if that never happened within the run.
    static func allNew(after at: Duration, old: Set<pid_t>, memory: [TreeSample], workers: Int) -> Double? {
        memory.first { $0.at >= at && old.isDisjoint(with: $0.children) && $0.loaded.count >= workers }.map { seconds($0.at - at) }
    }

    /// Buckets of 250 ms: latency percentiles, failures; memory as sampled.
    static func series(samples: [LatencySample], failures: [Duration], memory: [TreeSample], start: Duration, end: Duration, triggers: [Duration]) -> RunSeries
    {
        let bucket = 0.25
        let count = Int(seconds(end - start) / bucket) + 1
        var lat = [[Double]](repeating: [], count: count)
        var fails = [Int](repeating: 0, count: count)
        func index(_ d: Duration) -> Int? {
            let i = Int(seconds(d - start) / bucket)
            return i >= 0 && i < count ? i : nil
        }
        for s in samples { if let i = index(s.end) { lat[i].append(seconds(s.latency) * 1000) } }
        for f in failures { if let i = index(f) { fails[i] += 1 } }
        var out = RunSeries()
        for i in 0..<count {
            let sorted = lat[i].sorted()
            func pct(_ p: Double) -> Double {
                sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
            }
            out.t.append(Double(i) * bucket)
            out.p50.append(round3(pct(0.5)))
            out.p99.append(round3(pct(0.99)))
            out.max.append(round3(sorted.last ?? 0))
            out.failures.append(fails[i])
        }
        for m in memory where m.at >= start {
            out.memoryT.append(round3(seconds(m.at - start)))
            out.pssMiB.append(round3(Double(m.totalPSS) / 1_048_576))
        }
        out.triggers = triggers.map { round3(seconds($0 - start)) }
        return out
    }
}

func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
