import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// Median with min and max over repetitions.
struct Spread: Codable {
    var median: Double
    var min: Double
    var max: Double

    init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        min = s.first!
        max = s.last!
    }

    /// "12.3 (10.1–14.0)", or "12.3" when every repetition agreed or there was one.
    func text(_ digits: Int = 1) -> String {
        min == max ? fixed(median, digits) : "\(fixed(median, digits)) (\(fixed(min, digits))–\(fixed(max, digits)))"
    }
}

/// The summary of one contender × app over its repetitions.
struct RowSummary: Codable {
    var contender: String
    var app: String
    var runs: Int
    var steadyThroughput: Spread?
    var steadyP50: Spread?
    var steadyP99: Spread?
    var steadyMax: Spread?
    /// wrk just before the load: req/s, p50 and p99 ms, errors.
    var wrkThroughput: Spread?
    var wrkP50: Spread?
    var wrkP99: Spread?
    var wrkErrors: Spread?
    var windowP50: Spread?
    var windowP99: Spread?
    var windowMax: Spread?
    var steadyStall: Spread?
    var windowStall: Spread?
    /// Window ÷ the same run's steady window.
    var p50Ratio: Spread?
    var p99Ratio: Spread?
    var maxRatio: Spread?
    /// Per trigger, its own window's p99 ÷ the steady p99.
    var p99RatioPerTrigger: [Spread?]?
    var failed: Spread?
    var failuresByKind: [String: Int]
    /// Runs whose first / second trigger completed.
    var completed: [Int]
    var allNewSeconds: Spread?
    var steadyPSSMiB: Spread?
    var peakPSSMiB: Spread?
    var pssRatio: Spread?
    var workersReplaced: Spread?
    /// Requests retried once after a reused keep-alive connection closed before any byte of the answer.
    var retried: Spread?

    init(_ runs: [LoadRun]) {
        let r = runs
        contender = r[0].contender
        app = r[0].variant
        self.runs = r.count
        func s(_ f: (LoadRun) -> Double?) -> Spread? { Spread(r.compactMap(f)) }
        func ratio(_ a: Double, _ b: Double) -> Double? { b > 0 ? a / b : nil }
        steadyThroughput = s { $0.steady.throughput }
        steadyP50 = s { $0.steady.p50 }
        steadyP99 = s { $0.steady.p99 }
        steadyMax = s { $0.steady.max }
        wrkThroughput = s { $0.wrk?.throughput }
        wrkP50 = s { $0.wrk?.p50 }
        wrkP99 = s { $0.wrk?.p99 }
        wrkErrors = s { $0.wrk.map { Double($0.errors) } }
        windowP50 = s { $0.window.p50 }
        windowP99 = s { $0.window.p99 }
        windowMax = s { $0.window.max }
        steadyStall = s { $0.steady.stall }
        windowStall = s { $0.window.stall }
        p50Ratio = s { ratio($0.window.p50, $0.steady.p50) }
        p99Ratio = s { ratio($0.window.p99, $0.steady.p99) }
        maxRatio = s { ratio($0.window.max, $0.steady.max) }
        let triggerCount = r.map { $0.triggerWindows?.count ?? 0 }.max() ?? 0
        p99RatioPerTrigger = (0..<triggerCount).map { k in
            s { run in run.triggerWindows.flatMap { k < $0.count ? ratio($0[k].p99, run.steady.p99) : nil } }
        }
        failed = s { Double($0.failedInWindow) }
        failuresByKind = r.reduce(into: [:]) { acc, run in run.failures.forEach { acc[$0.key, default: 0] += $0.value } }
        let triggers = r.map(\.triggerSeconds.count).max() ?? 0
        completed = (0..<triggers).map { k in r.filter { k < $0.triggerSeconds.count && $0.triggerSeconds[k] != nil }.count }
        allNewSeconds = s { $0.allNewSeconds }
        steadyPSSMiB = s { $0.steadyPSSMiB }
        peakPSSMiB = s { $0.peakPSSMiB }
        pssRatio = s { ratio($0.peakPSSMiB, $0.steadyPSSMiB) }
        workersReplaced = s { Double($0.workersReplaced) }
        retried = s { Double($0.idleCloseRetries) }
    }
}

/// Writes latest.json, latest.md and the plots.
struct CompareReport {
    let results: Compare.Results
    let outputDirectory: String

    struct Document: Codable {
        var results: Compare.Results
        var restartSummary: [RowSummary]
        var recycleSummary: [RowSummary]
    }

    func write() throws {
        try Filesystem.makeDirectory(outputDirectory, mode: 0o755)
        let restart = Self.summaries(results.restart)
        let recycle = Self.summaries(results.recycle)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = outputDirectory + "/latest.json"
        let doc = Document(results: results, restartSummary: restart, recycleSummary: recycle)
        TestPaths.write(json, String(decoding: try encoder.encode(doc), as: UTF8.self) + "\n")
        let md = outputDirectory + "/latest.md"
        TestPaths.write(md, markdown(restart: restart, recycle: recycle))
        print(markdown(restart: restart, recycle: recycle))
        progress("wrote \(json) and \(md)")
        let plot = try TestProcess.run([Self.plotPython(), "Benchmarks/plot.py", json, outputDirectory], timeout: .seconds(300))
        progress(plot.code == 0 ? plot.stdout.trimmingSuffix() : "plots FAILED (\(plot.code)): \(plot.stderr)")
    }

    /// The python that has matplotlib: Debian's (python3-matplotlib), else the one on PATH.
    static func plotPython() -> String {
        let debian = try? TestProcess.run(["/usr/bin/python3", "-c", "import matplotlib"], timeout: .seconds(60))
        return debian?.code == 0 ? "/usr/bin/python3" : Tools.python
    }

    static func summaries(_ runs: [LoadRun]) -> [RowSummary] {
        var order: [String] = []
        var groups: [String: [LoadRun]] = [:]
        for r in runs {
            let key = r.variant + "|" + r.contender
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(r)
        }
        return order.map { RowSummary(groups[$0]!) }
    }

    private func markdown(restart: [RowSummary], recycle: [RowSummary]) -> String {
        let r = results
        var out = """
            # baton vs gunicorn, uWSGI and puma

            Generated \(r.generatedAt) by `make bench\(r.quick ? " QUICK=1" : "")`: \(r.repetitions) repetition(s), \
            medians with (min–max). \(r.workers) workers, \(r.connections) keep-alive client connections (closed loop), \
            all on 127.0.0.1. Machine: \(r.machine). **Numbers are noisy**: the load client, the supervisor and its \
            workers share these cores (virtual CPUs that other jobs on the host may use too); compare contenders within \
            this run, not across runs.

            Versions: \(r.versions.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")).

            Apps: `Benchmarks/apps/benchapp.py` (WSGI) and `config.ru` (Rack), 50 MiB of touched memory per worker; \
            *instant* boots at once, *slow* sleeps 2 s before it can serve. baton runs them as N single-worker \
            servers on its socket (gunicorn `--preload -w 1` with notify readiness; puma single mode with \
            `bind_to_activated_sockets`), plus baton's demo worker (`--hold 50`). Both puma rows run with \
            `queue_requests false` (no keep-alive; why: Benchmarks/README.md, *puma and keep-alive*); uWSGI's \
            `--http-socket` has no keep-alive either.

            ## Steady state (each restart run's pre-trigger window)

            Load client (as in the restart runs), and a \(fixed(r.restart.first?.wrk?.seconds ?? 0, 0)) s `wrk -t2 -c\(r.connections) --latency` run just before it \
            (a standard load generator's view of the same steady state; *wrk err*: socket errors and non-2xx).

            | contender | app | req/s | p50 ms | p99 ms | max ms | total PSS MiB | wrk req/s | wrk p50 ms | wrk p99 ms | wrk err |
            |---|---|---|---|---|---|---|---|---|---|---|

            """
        for s in restart {
            out +=
                "| \(s.contender) | \(s.app) | \(t(s.steadyThroughput, 0)) | \(t(s.steadyP50, 2)) | \(t(s.steadyP99, 2)) | \(t(s.steadyMax, 1)) | \(t(s.steadyPSSMiB, 0)) | \(t(s.wrkThroughput, 0)) | \(t(s.wrkP50, 2)) | \(t(s.wrkP99, 2)) | \(t(s.wrkErrors, 0)) |\n"
        }
        out += """

            ## Restart every worker under load, twice (second trigger 7 s after the first)

            Triggers: baton `deploy` (surge, then `replace --wait`); gunicorn SIGHUP; uWSGI chain reload (master FIFO `c`, \
            `--lazy-apps`); puma phased restart (SIGUSR1, cluster without preload). *completed*: runs in which, within 50 s of \
            the second trigger, the workers present at the trigger were all gone and N new ones had loaded the app \
            (baton: and its `deploy` exited 0). *stall*: the longest time in which no request completed at all \
            (steady → restart window). *failed*: \
            refused, reset, timeout (>10 s), non-2xx in the restart window. *retried*: requests \
            sent on a reused keep-alive connection that the server closed before any byte of the answer, retried \
            once on a new connection as HTTP clients do (whole run; a failed retry counts as failed). Ratios (×, median) are to the same run's steady window (see the steady table).

            *p99 per trigger*: the p99 from each trigger until the workers present at it were replaced, over steady \
            (baton: the surge deploy, then the replace deploy).

            | contender | app | completed 1st / 2nd | failed | retried | p50 ms | p99 ms | p99 per trigger 1st / 2nd | max ms | stall ms steady → restart | all new after s | total PSS steady → peak MiB |
            |---|---|---|---|---|---|---|---|---|---|---|---|

            """
        for s in restart {
            let done = s.completed.map { "\($0)/\(s.runs)" }.joined(separator: " / ")
            let kinds =
                s.failuresByKind.isEmpty ? "" : " " + s.failuresByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            out += "| \(s.contender) | \(s.app) | \(done) | **\(t(s.failed, 0))**\(kinds) | \(t(s.retried, 0)) | \(t(s.windowP50, 1)) \(x(s.p50Ratio)) | "
            out +=
                "\(t(s.windowP99, 1)) \(x(s.p99Ratio)) | \((s.p99RatioPerTrigger ?? []).map { x($0) }.joined(separator: " / ")) | \(t(s.windowMax, 0)) \(x(s.maxRatio)) | \(t(s.steadyStall, 0)) → \(t(s.windowStall, 0)) | \(t(s.allNewSeconds, 1)) | "
            out += "\(t(s.steadyPSSMiB, 0)) → \(t(s.peakPSSMiB, 0)) ×\(s.pssRatio.map { fixed($0.median, 2) } ?? "") |\n"
        }
        out += "\nbaton deploy exit codes (first, second): "
        out +=
            r.restart.filter { !$0.deployExitCodes.isEmpty }.map {
                "\($0.contender)/\($0.variant)#\($0.repetition + 1) \($0.deployExitCodes.map { $0.map(String.init) ?? "running" }.joined(separator: ","))"
            }
            .joined(separator: "; ") + ".\n"
        let reforked = r.restart.filter { $0.reforkWaitSeconds != nil }
        if !reforked.isEmpty {
            out += "\nRefork rows (`[mold] refork_after_requests = \(RunningContender.reforkAfterRequests)`): the steady window began once a warmed "
            out += "worker was the mold and every slot ran a worker forked from it (baton's status, and its log: `is the mold now`, then "
            out += "`reload finished`), that many seconds after the warm-up: "
            out += reforked.map { "\($0.contender)/\($0.variant)#\($0.repetition + 1) \(fixed($0.reforkWaitSeconds ?? 0, 1))" }.joined(separator: "; ")
            out += ". Each deploy's release is reforked once too, inside the restart window.\n"
        }
        out += """

            ![latency, slow app](restart-latency-slow.png)
            ![total PSS, slow app](restart-memory-slow.png)

            Instant app: [latency](restart-latency-instant.png), [memory](restart-memory-instant.png).

            ## Memory-driven recycling under load (app leaks 8 KiB per request)

            | contender | policy | workers replaced | failed | retried | p99 ms | max ms | total PSS steady → peak MiB |
            |---|---|---|---|---|---|---|---|

            """
        for s in recycle {
            let kinds =
                s.failuresByKind.isEmpty ? "" : " " + s.failuresByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let failedAll = Spread(r.recycle.filter { $0.contender == s.contender }.map { Double($0.failedTotal) })
            out +=
                "| \(s.contender) | \(r.recyclePolicies[s.contender] ?? "") | \(t(s.workersReplaced, 0)) | **\(t(failedAll, 0))**\(kinds) | \(t(s.retried, 0)) | "
            out += "\(t(s.windowP99, 1)) | \(t(s.windowMax, 0)) | \(t(s.steadyPSSMiB, 0)) → \(t(s.peakPSSMiB, 0)) |\n"
        }
        out += "\nWhat each peak was made of (total = supervisor + each direct child's tree, MiB; a mold is a child), "
        out += "and the lowest total after the steady window began:\n\n"
        for run in r.recycle {
            out += "- \(run.contender) #\(run.repetition + 1): peak \(run.peak?.summary ?? "?"); lowest \(run.lowest?.summary ?? "?")\n"
        }
        out += """

            ![recycling](recycle.png)

            ## Supervisor overhead (the master process alone, no load, tiny app)

            | supervisor | workers | RSS MiB | PSS MiB | USS MiB | CPU % of one core |
            |---|---|---|---|---|---|

            """
        for o in r.overhead {
            out +=
                "| \(o.supervisor) | \(o.workers) | \(fixed(o.master.rssMiB, 1)) | \(fixed(o.master.pssMiB, 1)) | \(fixed(o.master.ussMiB, 1)) | \(fixed(o.master.cpuPercent, 2)) |\n"
        }
        out += "\nRaw data: `latest.json` (every run; time series for the first repetition).\n"
        return out
    }

    private func t(_ s: Spread?, _ digits: Int) -> String { s?.text(digits) ?? "–" }

    /// A ratio's median only: "×1.3".
    private func x(_ s: Spread?) -> String { s.map { "×" + fixed($0.median, 1) } ?? "" }
}

extension String {
    fileprivate func trimmingSuffix() -> String {
        var s = self
        while s.last == "\n" { s.removeLast() }
        return s
    }
}
