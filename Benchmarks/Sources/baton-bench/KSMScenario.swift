import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc

/// "ksm": what `[memory] mergeable` saves on this kernel. Four workers of one app that cannot
/// share memory by forking (each slot execs its own server), with `mergeable` off and then on:
/// baton+gunicorn running Benchmarks/apps/benchapp.py (50 MiB of identical ballast per worker)
/// and the demo worker holding 50 MiB (`--hold 50`: every page written the same way). When
/// /sys/kernel/mm/ksm/run is writable, ksmd is switched on for the measurement only (with a
/// faster scan) and every knob goes back to its old value afterwards, whatever happens (also
/// on SIGINT, SIGTERM and SIGHUP). After ksmd's full scans stop changing the merged-page
/// count (bounded), each worker tree is measured: PSS, USS, shared (smaps_rollup) and the KSM
/// profit (/proc/PID/ksm_stat). Writes results/ksm.json and ksm.md.
struct KSMScenario {
    let options: BenchOptions
    let holdMiB = 50
    /// ksmd's pace while measuring: 1000 pages every 20 ms (about 200 MiB/s).
    let pagesToScan = 1000
    let sleepMillisecs = 20
    /// The longest wait for the merge to settle, per run.
    let settleLimit = 180.0

    struct WorkerFigures: Codable {
        var pid: Int32
        var pssMiB: Double
        var ussMiB: Double
        var sharedMiB: Double
        var ksmProfitMiB: Double?
        var ksmMergingPages: UInt64?
        var mergeAny: Bool?
    }

    struct Run: Codable {
        var app: String
        var mergeable: Bool
        var workers: [WorkerFigures]
        var totalPSSMiB: Double
        var totalUSSMiB: Double
        var totalSharedMiB: Double
        var totalKSMProfitMiB: Double
        /// Seconds from all workers ready until the merge settled (or the limit).
        var settleSeconds: Double
        var settled: Bool
        /// ksmd full scans during the wait.
        var fullScans: Int
    }

    struct Saving: Codable {
        var app: String
        var pssOffMiB: Double
        var pssOnMiB: Double
        var savedMiB: Double
        var savedPercent: Double
        var meanProfitPerWorkerMiB: Double
    }

    struct Result: Codable {
        var scenario = "ksm"
        var kernel: String
        var workers: Int
        var holdMiBPerWorker: Int
        /// /sys/kernel/mm/ksm/run before the run (restored after it).
        var ksmdRunBefore: String
        /// Whether the bench switched ksmd on for the measurement.
        var ksmdSwitchedOn: Bool
        var pagesToScan: Int
        var sleepMillisecs: Int
        var runs: [Run]
        var savings: [Saving]
    }

    func run() throws {
        let knobs = KSMKnobs.read()
        let writable = access(MemoryMerge.runPath, W_OK) == 0
        var switchedOn = false
        defer { KSMKnobs.restore() }
        if knobs.run != "1", writable {
            KSMKnobs.install(knobs)
            try KSMKnobs.set(pagesToScan: pagesToScan, sleepMillisecs: sleepMillisecs)
            switchedOn = true
        } else if knobs.run != "1" {
            print("ksm: \(MemoryMerge.runPath) is \(knobs.run) and not writable: nothing will merge; measuring anyway")
        }
        let app = AppVariant(name: "ksm", bootDelay: 0, memoryMiB: holdMiB)
        var runs: [Run] = []
        for contender in [Contender.batonGunicorn, .batonDemo] {
            for mergeable in [false, true] {
                let started = try RunningContender(contender, app: app, workers: options.workers, memory: "[memory]\nmergeable = \(mergeable)")
                KSMKnobs.supervisor = started.master.pid
                defer {
                    KSMKnobs.supervisor = 0
                    started.stop()
                }
                runs.append(try measure(started, app: contender.rawValue, mergeable: mergeable))
            }
        }
        var savings: [Saving] = []
        for name in [Contender.batonGunicorn.rawValue, Contender.batonDemo.rawValue] {
            guard let off = runs.first(where: { $0.app == name && !$0.mergeable }), let on = runs.first(where: { $0.app == name && $0.mergeable }) else {
                continue
            }
            let saved = off.totalPSSMiB - on.totalPSSMiB
            savings.append(
                Saving(
                    app: name, pssOffMiB: off.totalPSSMiB, pssOnMiB: on.totalPSSMiB, savedMiB: saved,
                    savedPercent: off.totalPSSMiB > 0 ? saved / off.totalPSSMiB * 100 : 0,
                    meanProfitPerWorkerMiB: on.workers.isEmpty ? 0 : on.totalKSMProfitMiB / Double(on.workers.count)))
        }
        let result = Result(
            kernel: kernelRelease(), workers: options.workers, holdMiBPerWorker: holdMiB, ksmdRunBefore: knobs.run, ksmdSwitchedOn: switchedOn,
            pagesToScan: switchedOn ? pagesToScan : Int(knobs.pagesToScan) ?? 0,
            sleepMillisecs: switchedOn ? sleepMillisecs : Int(knobs.sleepMillisecs) ?? 0, runs: runs, savings: savings)
        let table = markdown(result)
        print(table)
        try writeResult(result, name: "ksm", directory: options.outputDirectory)
        TestPaths.write(options.outputDirectory + "/ksm.md", table)
        print("wrote \(options.outputDirectory)/ksm.md")
    }

    /// Waits (bounded) until ksmd's merged-page count over the workers holds still for two full
    /// scans in a row, then measures every worker tree.
    private func measure(_ c: RunningContender, app: String, mergeable: Bool) throws -> Run {
        let workers = c.children
        guard workers.count == options.workers else { throw BenchError("\(app): \(workers.count) workers, expected \(options.workers)") }
        let start = monotonicNow()
        let deadline = start + .milliseconds(Int64(settleLimit * 1000))
        let scansAtStart = KSMKnobs.fullScans()
        var lastScan = scansAtStart
        var lastMerged: UInt64?
        var stableScans = 0
        var settled = false
        // ksmd off, or no worker marked (ksmd then sleeps, and counts no scans): nothing can
        // change, one look is the answer.
        let marked = workers.contains { ProcFS.treeKSM(of: $0)?.mergeAny == true }
        if KSMKnobs.read().run != "1" || !marked { settled = true }
        while !settled, monotonicNow() < deadline {
            pause(0.25)
            let scans = KSMKnobs.fullScans()
            guard scans > lastScan else { continue }
            lastScan = scans
            let merged = workers.compactMap { ProcFS.treeKSM(of: $0)?.mergingPages }.reduce(0, +)
            // Within 0.5 % of the last full scan's count: settled after two such scans.
            if let last = lastMerged, scans - scansAtStart >= 2, Double(max(merged, last) - min(merged, last)) <= Double(max(last, 1)) * 0.005 {
                stableScans += 1
                settled = stableScans >= 2
            } else {
                stableScans = 0
            }
            lastMerged = merged
        }
        let waited = seconds(monotonicNow() - start)
        var figures: [WorkerFigures] = []
        for pid in workers {
            guard let m = ProcFS.treeMemory(of: pid, detailed: true) else { continue }
            let ksm = ProcFS.treeKSM(of: pid)
            figures.append(
                WorkerFigures(
                    pid: pid, pssMiB: mebibytes(m.pss ?? 0), ussMiB: mebibytes(m.uss ?? 0), sharedMiB: mebibytes(m.shared ?? 0),
                    ksmProfitMiB: ksm.map { Double($0.profit) / 1_048_576 }, ksmMergingPages: ksm?.mergingPages, mergeAny: ksm?.mergeAny))
        }
        let run = Run(
            app: app, mergeable: mergeable, workers: figures, totalPSSMiB: figures.map(\.pssMiB).reduce(0, +),
            totalUSSMiB: figures.map(\.ussMiB).reduce(0, +), totalSharedMiB: figures.map(\.sharedMiB).reduce(0, +),
            totalKSMProfitMiB: figures.compactMap(\.ksmProfitMiB).reduce(0, +), settleSeconds: waited, settled: settled,
            fullScans: lastScan - scansAtStart)
        print(
            "ksm: \(app) mergeable=\(mergeable): total PSS \(fixed(run.totalPSSMiB, 1)) MiB, USS \(fixed(run.totalUSSMiB, 1)) MiB, KSM profit \(fixed(run.totalKSMProfitMiB, 1)) MiB after \(fixed(waited, 1)) s (\(run.fullScans) full scans\(settled ? "" : ", not settled"))"
        )
        return run
    }

    private func mebibytes(_ bytes: UInt64) -> Double { Double(bytes) / 1_048_576 }

    private func kernelRelease() -> String {
        (ProcFS.read("/proc/sys/kernel/osrelease") ?? "?").split(separator: "\n").first.map(String.init) ?? "?"
    }

    private func markdown(_ r: Result) -> String {
        var lines = [
            "# KSM: `[memory] mergeable` (\(r.workers) workers, \(r.holdMiBPerWorker) MiB of identical data each, Linux \(r.kernel))", "",
            "ksmd before the run: run = \(r.ksmdRunBefore); \(r.ksmdSwitchedOn ? "switched on for the measurement (pages_to_scan = \(r.pagesToScan), sleep_millisecs = \(r.sleepMillisecs)), then restored" : "left as it was")",
            "",
            "| app | mergeable | total PSS MiB | total USS MiB | total shared MiB | KSM profit MiB (total) | settle s | full scans |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in r.runs {
            lines.append(
                "| \(run.app) | \(run.mergeable) | \(fixed(run.totalPSSMiB, 1)) | \(fixed(run.totalUSSMiB, 1)) | \(fixed(run.totalSharedMiB, 1)) | \(fixed(run.totalKSMProfitMiB, 1)) | \(fixed(run.settleSeconds, 1))\(run.settled ? "" : " (not settled)") | \(run.fullScans) |"
            )
        }
        lines += ["", "| app | PSS off MiB | PSS on MiB | saved MiB | saved % | KSM profit per worker MiB |", "|---|---|---|---|---|---|"]
        for s in r.savings {
            lines.append(
                "| \(s.app) | \(fixed(s.pssOffMiB, 1)) | \(fixed(s.pssOnMiB, 1)) | \(fixed(s.savedMiB, 1)) | \(fixed(s.savedPercent, 1)) | \(fixed(s.meanProfitPerWorkerMiB, 1)) |"
            )
        }
        lines += ["", "Per worker (PSS / USS / shared / KSM profit, MiB):", ""]
        for run in r.runs where run.mergeable {
            let cells = run.workers.map { w in
                "pid \(w.pid): \(fixed(w.pssMiB, 1)) / \(fixed(w.ussMiB, 1)) / \(fixed(w.sharedMiB, 1)) / \(w.ksmProfitMiB.map { fixed($0, 1) } ?? "-")"
            }
            lines.append("- \(run.app): " + cells.joined(separator: "; "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// ksmd's knobs in /sys/kernel/mm/ksm: read, changed for a measurement, and put back, also
/// from a signal handler (the saved values are kept as C strings for async-signal-safe
/// writes).
enum KSMKnobs {
    struct Values {
        var run: String
        var pagesToScan: String
        var sleepMillisecs: String
    }

    static let directory = "/sys/kernel/mm/ksm"
    /// path and value pairs to write back, in order (run last), NUL-terminated; nil when
    /// nothing was changed.
    nonisolated(unsafe) private static var saved: [(UnsafeMutablePointer<CChar>, UnsafeMutablePointer<CChar>)]?
    /// The baton being measured, stopped (SIGTERM: it drains its workers) when a signal ends
    /// the bench; 0 when none.
    nonisolated(unsafe) static var supervisor: pid_t = 0

    static func read() -> Values {
        func value(_ name: String) -> String {
            (ProcFS.read("\(directory)/\(name)") ?? "?").split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "?"
        }
        return Values(run: value("run"), pagesToScan: value("pages_to_scan"), sleepMillisecs: value("sleep_millisecs"))
    }

    /// ksmd's full scans since boot.
    static func fullScans() -> Int {
        Int((ProcFS.read("\(directory)/full_scans") ?? "0").split(whereSeparator: \.isWhitespace).first ?? "0") ?? 0
    }

    /// Remembers `values` for `restore()` and installs the signal handlers that restore them.
    static func install(_ values: Values) {
        saved = [
            (strdup("\(directory)/pages_to_scan")!, strdup(values.pagesToScan + "\n")!),
            (strdup("\(directory)/sleep_millisecs")!, strdup(values.sleepMillisecs + "\n")!),
            (strdup("\(directory)/run")!, strdup(values.run + "\n")!),
        ]
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                KSMKnobs.writeSaved()
                if KSMKnobs.supervisor > 0 { kill(KSMKnobs.supervisor, SIGTERM) }
                _exit(128 + sig)
            }
            sigemptyset(&action.sa_mask)
            sigaction(sig, &action, nil)
        }
    }

    /// Switches ksmd on at the given pace.
    static func set(pagesToScan: Int, sleepMillisecs: Int) throws {
        for (name, value) in [("pages_to_scan", "\(pagesToScan)"), ("sleep_millisecs", "\(sleepMillisecs)"), ("run", "1")] {
            guard write("\(directory)/\(name)", value + "\n") else {
                throw BenchError("cannot write \(directory)/\(name): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Puts back what `install` saved (a no-op when nothing was changed).
    static func restore() {
        guard saved != nil else { return }
        writeSaved()
        let now = read()
        print("ksm: restored \(directory): run = \(now.run), pages_to_scan = \(now.pagesToScan), sleep_millisecs = \(now.sleepMillisecs)")
    }

    /// Async-signal-safe: open, write, close of saved C strings.
    private static func writeSaved() {
        guard let saved else { return }
        for (path, value) in saved {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            _ = Glibc.write(fd, value, strlen(value))
            close(fd)
        }
    }

    private static func write(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}
