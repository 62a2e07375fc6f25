import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "compare": baton side by side with gunicorn, uWSGI and puma on the same app
/// and the same load, in one run: restart every worker under load (twice),
/// memory-driven recycling, supervisor overhead. Writes
/// `results/latest.json`, `results/latest.md` and PNG plots.
struct Compare {
    let options: BenchOptions

    /// The supervisor-overhead measurement of one master.
    struct Overhead: Codable {
        var supervisor: String
        var workers: Int
        var master: ProcessCost
    }

    /// Everything the run measured.
    struct Results: Codable {
        var generatedAt: String
        var quick: Bool
        var repetitions: Int
        var workers: Int
        var connections: Int
        var machine: String
        var versions: [String: String]
        var apps: [AppVariant]
        var restart: [LoadRun]
        var recycle: [LoadRun]
        var recyclePolicies: [String: String]
        var overhead: [Overhead]
    }

    /// 3 (1 with `--quick`); BENCH_REPETITIONS=N overrides it (interleaving A/B runs of one scenario).
    var repetitions: Int { environmentValue("BENCH_REPETITIONS").flatMap { Int($0) }.map { max(1, $0) } ?? (options.quick ? 1 : 3) }
    let workers = 4
    let connections = 8

    func run() throws {
        let contenders = Self.selected()
        let started = monotonicNow()
        var restart: [LoadRun] = []
        var recycle: [LoadRun] = []
        var overhead: [Overhead] = []
        let driver = LoadRunDriver(
            connections: connections, steadySeconds: 3, triggerGaps: [7], maxWait: 50, quietSeconds: options.quick ? 5 : 10,
            wrkSeconds: options.quick ? 1 : 2)
        for rep in 0..<repetitions {
            for variant in [AppVariant.instant, .slow] where Self.variantSelected(variant) {
                for contender in contenders {
                    let runStart = monotonicNow()
                    if let r = measure(
                        contender.rawValue + " " + variant.name,
                        {
                            let running = try RunningContender(contender, app: variant, workers: workers)
                            defer { running.stop() }
                            return try driver.run(running, app: variant, repetition: rep)
                        })
                    {
                        restart.append(rep == 0 ? r : r.withoutSeries())
                        progress(
                            "restart \(contender.rawValue) \(variant.name) #\(rep + 1): failed \(r.failedInWindow) \(r.failures), completed \(r.completed), "
                                + "all new \(r.allNewSeconds.map { fixed($0) } ?? "never")s, p99 \(fixed(r.steady.p99)) -> \(fixed(r.window.p99)) ms, "
                                + "PSS \(fixed(r.steadyPSSMiB, 0)) -> \(fixed(r.peakPSSMiB, 0)) MiB"
                                + (r.reforkWaitSeconds.map { ", refork done \(fixed($0, 1)) s after warm-up" } ?? "")
                                + " [\(fixed(seconds(monotonicNow() - runStart), 0)) s]")
                    }
                }
            }
            if !Self.restartOnly { recycle += recycleRuns(contenders, repetition: rep) }
        }
        if !Self.restartOnly { overhead = overheadRuns(contenders) }
        let results = Results(
            generatedAt: Self.timestamp(), quick: options.quick, repetitions: repetitions, workers: workers, connections: connections,
            machine: Self.machine(), versions: Self.versions(), apps: [.instant, .slow, Self.leaky], restart: restart, recycle: recycle,
            recyclePolicies: Self.recyclePolicies, overhead: overhead)
        try CompareReport(results: results, outputDirectory: options.outputDirectory).write()
        progress("compare: done in \(fixed(seconds(monotonicNow() - started), 0)) s")
    }

    // MARK: - Memory-driven recycling

    static let leaky = AppVariant(name: "leaky", bootDelay: 0, memoryMiB: 50, growKiB: 8)
    /// Recycling by count, as gunicorn's `--max-requests 3000 --max-requests-jitter 300`.
    static let maxRequests = "[rolling]\nmax_requests = 3000\nmax_requests_jitter = 300\n"
    /// Replace recycles (no extra worker, like gunicorn's kill-then-fork), two slots at once.
    static let replaceTwo = "[deploy]\nstrategy = \"replace\"\nmax_unavailable = 2"
    static let recyclePolicies = [
        "baton+gunicorn":
            "[memory] budget 1GiB, threshold 33% (total PSS > 338 MiB: recycle the largest workers), check 1s, smaps every check; [deploy] strategy replace, max_unavailable 2 (recycle_concurrency auto: 2 at once)",
        "gunicorn": "--max-requests 3000 --max-requests-jitter 300",
        "gunicorn preload": "--preload --max-requests 3000 --max-requests-jitter 300 (a recycled worker is forked from the master, which holds the app)",
        "baton+demo-worker":
            "[rolling] max_requests 3000, max_requests_jitter 300 (the demo worker reports X_BATON_REQUESTS=; another app than the gunicorn rows); [deploy] strategy replace, max_unavailable 2 (no extra worker, like gunicorn; recycle_concurrency auto: 2 at once)",
        "baton+python(mold)":
            "the gunicorn rows' WSGI app in mold mode (adapters/python/baton_mold.py, waitress; each worker forked from the mold, which holds the app, and reports X_BATON_REQUESTS=); [rolling] max_requests 3000, max_requests_jitter 300; [deploy] strategy replace, max_unavailable 2 (recycle_concurrency auto: 2 at once)",
        moldThresholdRow:
            "the baton+python(mold) row's app and mold with baton+gunicorn's threshold policy, the line moved by the baseline: [memory] budget 1GiB, threshold 12% (the workers' PSS, the mold's not counted, > 123 MiB: ~58 MiB over the fresh workers, as 338 MiB is over baton+gunicorn's; recycle the largest workers), check 1s, smaps every check; no max_requests; [deploy] strategy replace, max_unavailable 2 (recycle_concurrency auto: 2 at once)",
    ]

    /// The threshold policy of the recycling rows: `threshold` of a 1 GiB budget, checked every
    /// second with smaps every check, replace recycles two at once.
    static func thresholdPolicy(_ threshold: String) -> String {
        """
        [memory]
        budget = "1GiB"
        threshold = "\(threshold)"
        check_interval = "1s"
        smaps_every = 1
        min_worker_age = "2s"
        \(replaceTwo)
        """
    }

    /// The mold row with the threshold policy (its own row name in the report).
    static let moldThresholdRow = "baton+python(mold) threshold"

    /// The recycling rows, in run order: the contender, the row's name in the report, baton's
    /// config sections and the peer's arguments.
    static let recycleSetups: [(contender: Contender, row: String, memory: String, extraArgs: [String])] = [
        (.batonGunicorn, Contender.batonGunicorn.rawValue, thresholdPolicy("33%"), []),
        (.gunicorn, Contender.gunicorn.rawValue, "", ["--max-requests", "3000", "--max-requests-jitter", "300"]),
        (.gunicornPreload, Contender.gunicornPreload.rawValue, "", ["--max-requests", "3000", "--max-requests-jitter", "300"]),
        (.batonDemo, Contender.batonDemo.rawValue, maxRequests + replaceTwo, []),
        (.batonPythonMold, Contender.batonPythonMold.rawValue, maxRequests + replaceTwo, []),
        // The same leak allowed before the line as the baton+gunicorn row (338 MiB over its 4 fresh
        // trees' ~280 MiB of PSS: ~58 MiB): the mold's 4 fresh workers share the app with the mold
        // and sum to ~64 MiB, so 122 MiB, 12 % of 1 GiB. (The same ratio, 1.2 × 64 MiB, leaves less
        // than one check's worth of this leak: every worker is recycled at once, and all are then
        // too young for `min_worker_age` together.)
        (.batonPythonMold, moldThresholdRow, thresholdPolicy("12%"), []),
    ]

    private func recycleRuns(_ contenders: [Contender], repetition: Int) -> [LoadRun] {
        let driver = LoadRunDriver(connections: connections, steadySeconds: 2, triggerGaps: [], maxWait: 0, duration: options.quick ? 10 : 20)
        var runs: [LoadRun] = []
        for setup in Self.recycleSetups where contenders.contains(setup.contender) {
            let contender = setup.contender
            if var r = measure(
                "recycle \(setup.row)",
                {
                    let running = try RunningContender(contender, app: Self.leaky, workers: workers, memory: setup.memory, extraArgs: setup.extraArgs)
                    defer { running.stop() }
                    return try driver.run(running, app: Self.leaky, repetition: repetition)
                })
            {
                r.contender = setup.row
                runs.append(repetition == 0 ? r : r.withoutSeries())
                progress(
                    "recycle \(setup.row) #\(repetition + 1): replaced \(r.workersReplaced), failed \(r.failedTotal) \(r.failures), p99 \(fixed(r.window.p99)) ms, peak PSS \(fixed(r.peakPSSMiB, 0)) MiB"
                        + " (\(r.peak?.summary ?? "?"); lowest \(r.lowest?.summary ?? "?"))"
                )
            }
        }
        return runs
    }

    // MARK: - Supervisor overhead

    private func overheadRuns(_ contenders: [Contender]) -> [Overhead] {
        let tiny = AppVariant(name: "tiny", bootDelay: 0, memoryMiB: 0)
        var result: [Overhead] = []
        for contender in [Contender.batonDemo, .gunicorn, .uwsgi, .puma] where contenders.contains(contender) {
            for n in [workers, 64] {
                if let o = measure(
                    "overhead \(contender.rawValue) \(n)",
                    { () -> Overhead in
                        let running = try RunningContender(contender, app: tiny, workers: n)
                        defer { running.stop() }
                        pause(options.quick ? 1 : 2)
                        return Overhead(
                            supervisor: contender.rawValue, workers: n, master: ProcessCost.measure(running.master.pid, window: options.quick ? 2 : 10))
                    })
                {
                    result.append(o)
                    progress(
                        "overhead \(contender.rawValue) with \(n) workers: RSS \(fixed(o.master.rssMiB, 1)) PSS \(fixed(o.master.pssMiB, 1)) USS \(fixed(o.master.ussMiB, 1)) MiB, CPU \(fixed(o.master.cpuPercent))%"
                    )
                }
            }
        }
        return result
    }

    // MARK: - Helpers

    /// Runs one measurement; a failure is logged and skipped (the rest of the run goes on).
    private func measure<T>(_ what: String, _ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch {
            progress("\(what): FAILED: \(error)")
            return nil
        }
    }

    /// BENCH_CONTENDERS=gunicorn,baton+gunicorn limits the run (e.g. `BENCH_CONTENDERS='baton+puma(mold),puma preload'`).
    static func selected() -> [Contender] {
        // The baseline row runs only with the adapter it compares against.
        let baseline = environmentValue("BENCH_PYTHON_MOLD_BASELINE")
        let known = Contender.allCases.filter { $0 != .batonPythonMoldBaseline || baseline != nil }
        guard let raw = environmentValue("BENCH_CONTENDERS") else { return known }
        let names = splitNames(raw)
        if baseline == nil, names.contains(Contender.batonPythonMoldBaseline.rawValue) {
            fail("BENCH_CONTENDERS: \(Contender.batonPythonMoldBaseline.rawValue) needs BENCH_PYTHON_MOLD_BASELINE=FILE (the adapter to compare with)")
        }
        let unknown = names.filter { Contender(rawValue: $0) == nil }
        if !unknown.isEmpty {
            fail("BENCH_CONTENDERS: unknown \(unknown.joined(separator: ", ")) (known: \(Contender.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return known.filter { names.contains($0.rawValue) }
    }

    /// Comma-separated names; a comma inside parentheses belongs to the name (`baton+puma(mold,refork)`).
    static func splitNames(_ raw: String) -> [String] {
        var names: [String] = []
        var current = ""
        var depth = 0
        for c in raw {
            if c == "," && depth == 0 {
                names.append(current)
                current = ""
                continue
            }
            if c == "(" { depth += 1 }
            if c == ")" { depth = max(0, depth - 1) }
            current.append(c)
        }
        names.append(current)
        return names.filter { !$0.isEmpty }
    }

    /// BENCH_RESTART_ONLY=1: the restart runs alone, no recycling or overhead runs (A/B runs of
    /// a rollout change).
    static var restartOnly: Bool { environmentValue("BENCH_RESTART_ONLY") == "1" }

    /// BENCH_VARIANTS=slow limits the restart runs (development).
    static func variantSelected(_ v: AppVariant) -> Bool {
        environmentValue("BENCH_VARIANTS").map { $0.split(separator: ",").contains(Substring(v.name)) } ?? true
    }

    static func versions() -> [String: String] {
        func first(_ argv: [String]) -> String {
            guard let r = try? TestProcess.run(argv, timeout: .seconds(20)) else { return "?" }
            let text = (r.stdout + "\n" + r.stderr).split(separator: "\n").first { !$0.isEmpty }
            return text.map(String.init) ?? "?"
        }
        return [
            "python (gunicorn)": first([Tools.python, "--version"]),
            "gunicorn": first([Tools.python, "-m", "gunicorn", "--version"]),
            "uwsgi": first([Tools.uwsgi, "--version"]),
            "puma": first([Tools.puma, "--version"]),
            "ruby": first(["/usr/bin/ruby", "--version"]),
            "puma sd_notify": Tools.pumaNotifies ? "yes (ruby-sd-notify)" : "no (baton uses delay readiness)",
        ]
    }

    static func machine() -> String {
        let cpu =
            ProcFS.read("/proc/cpuinfo")?.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String(($0.split(separator: ":", maxSplits: 1).last ?? "").drop { $0 == " " || $0 == "\t" }) } ?? "?"
        return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, \(cpu)"
    }

    static func timestamp() -> String {
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &tmv)
        return String(cString: buffer)
    }
}

extension LoadRun {
    /// The same run without its time series (only the first repetition is plotted).
    func withoutSeries() -> LoadRun {
        var copy = self
        copy.series = RunSeries()
        return copy
    }
}

/// One progress line on stderr.
func progress(_ line: String) {
    writeAll(2, Array((line + "\n").utf8))
}

/// An environment variable of this process.
func environmentValue(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
}
