import BatonCore
import FoundationEssentials
import Testing

private let now = 1_700_000_000.0
private let mib: UInt64 = 1024 * 1024

/// A report covering every cell format: ages in s/m/h/d, sizes rounding
/// down and up, missing figures, a crash-looping slot waiting to respawn.
private let report = StatusReport(
    app: "shop", pid: 812, state: "running", release: "/srv/shop/releases/42",
    listeners: ["127.0.0.1:8080", "unix:/run/shop.sock"], slots: 4, summary: "3/4 workers ready",
    workers: [
        WorkerStatus(
            slot: 0, pid: 1001, state: "ready", release: "/srv/shop/releases/42", generation: 3, startedAt: now - 3725,
            readyAfter: 1.25, rssBytes: 150 * mib, pssBytes: 95 * mib, ussBytes: 1_153_434, restarts: 2,
            lastRestartReason: "reload", statusText: "Listening on fd 3", leakMiBPerHour: 12.34, secondsToLimit: 7500,
            limitBytes: 2 * mib),
        WorkerStatus(
            slot: 1, pid: 1002, state: "draining", release: "/srv/shop/releases/41", generation: 1, startedAt: now - 41.6,
            rssBytes: mib, nextStartIn: 90),
        WorkerStatus(
            slot: 2, pid: 0, state: "exited", release: "/srv/shop/releases/42", generation: 7, restarts: 5,
            lastRestartReason: "crash", consecutiveFailures: 4, crashLoop: true, nextStartIn: 4),
        WorkerStatus(
            slot: 3, pid: 1004, state: "starting", release: "/srv/shop/releases/42", generation: 13,
            startedAt: now - (2 * 86400 + 3 * 3600 + 100), rssBytes: 2048 * mib, pssBytes: 0, ussBytes: 52_428, restarts: 12,
            lastRestartReason: "readiness-timeout"),
    ])

/// The keys of a JSON object, to check names without a JSON library.
private struct ObjectKeys: Decodable {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    let keys: Set<String>

    init(from decoder: any Decoder) throws {
        keys = Set(try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue))
    }
}

@Suite("StatusReport")
struct StatusReportTests {
    @Test func table() {
        let expected = """
            shop: 3/4 workers ready
            release: /srv/shop/releases/42
            listening: 127.0.0.1:8080, unix:/run/shop.sock

            SLOT  PID   STATE                              AGE   RSS      PSS    USS   SHARED  MEM           LEAK/h                  RESTARTS  LAST REASON        RELEASE
            0     1001  ready                              1h2m  150.0M   95.0M  1.1M  -       [######----]  +12.3M (limit in 2h5m)  2         reload             /srv/shop/releases/42
            1     1002  draining (retry in 1m30s)          42s   1.0M     -      -     -       -             -                       0         -                  /srv/shop/releases/41
            2     -     exited (crash-loop) (retry in 4s)  -     -        -      -     -       -             -                       5         crash              /srv/shop/releases/42
            3     1004  starting                           2d3h  2048.0M  0.0M   0.0M  -       [----------]  -                       12        readiness-timeout  /srv/shop/releases/42
            """
        let table = report.table(now: now)
        #expect(table == expected)
        if table != expected {
            for (got, want) in zip(
                table.split(separator: "\n", omittingEmptySubsequences: false),
                expected.split(separator: "\n", omittingEmptySubsequences: false)) where got != want
            {
                Issue.record("line differs:\n got: \(got)\nwant: \(want)")
            }
        }
    }

    @Test("without a worker limit, MEM bars measure USS against each worker's share of threshold × budget")
    func memoryLineAndShareBars() {
        var r = StatusReport(
            app: "shop", pid: 1, state: "running", release: "/srv/r", listeners: [], slots: 2, summary: "2/2 workers ready",
            workers: [
                WorkerStatus(slot: 0, pid: 10, state: "ready", release: "/srv/r", generation: 1, pssBytes: 30 * mib, ussBytes: 20 * mib),
                WorkerStatus(slot: 1, pid: 11, state: "ready", release: "/srv/r", generation: 1, pssBytes: 50 * mib, ussBytes: 45 * mib),
            ])
        // 200 MiB × 40% / 2 workers = 40 MiB each.
        r.memory = MemoryStatus(budgetBytes: 200 * mib, budgetSource: "cgroup", threshold: 0.4, workersPSSBytes: 80 * mib)
        #expect(r.memory?.share(workers: 2) == 40 * mib)
        let lines = r.table(now: now).split(separator: "\n").map(String.init)
        #expect(lines[3] == "memory: workers' PSS 80.0 MiB = 40% of the 200.0 MiB budget (cgroup); restart threshold 40%")
        #expect(lines[5].contains("[#####-----]  "), "\(lines[5])")
        #expect(lines[6].contains("[##########]+ "), "\(lines[6])")
        let json = String(decoding: try! JSONEncoder().encode(r), as: UTF8.self)
        #expect(json.contains("\"budget_source\":\"cgroup\""))
        #expect(json.contains("\"workers_pss_bytes\":\(80 * mib)"))
        // A cgroup budget: the cgroup's working set too, which the threshold rule measures when
        // it is the higher (found by a memory-pressure audit: the line read 45 % at 97 %).
        r.memory?.cgroupWorkingSetBytes = 194 * mib
        let cgroup = r.table(now: now).split(separator: "\n").map(String.init)
        #expect(
            cgroup[3] == "memory: workers' PSS 80.0 MiB = 40% of the 200.0 MiB budget (cgroup); cgroup working set 194.0 MiB = 97%; restart threshold 40%")
        #expect(String(decoding: try! JSONEncoder().encode(r), as: UTF8.self).contains("\"cgroup_working_set_bytes\":\(194 * mib)"))
    }

    @Test func tableWithoutWorkers() {
        let empty = StatusReport(
            app: "shop", pid: 1, state: "starting", release: "/srv/r", listeners: [], slots: 0, summary: "no workers",
            workers: [])
        #expect(
            empty.table(now: now) == """
                shop: no workers
                release: /srv/r
                listening: \("")

                SLOT  PID  STATE  AGE  RSS  PSS  USS  SHARED  MEM  LEAK/h  RESTARTS  LAST REASON  RELEASE
                """)
    }

    @Test func operationInProgressAndDegraded() {
        var r = StatusReport(
            app: "shop", pid: 1, state: "running", release: "/srv/r1", listeners: ["127.0.0.1:8080"], slots: 0,
            summary: "deploying", workers: [])
        r.operation = OperationStatus(
            kind: "deploy", phase: "rolling-out", release: "/srv/r2", elapsed: 65, progress: ["slot 0 ready", "slot 1 draining"],
            queued: 2)
        r.degraded = true
        #expect(
            r.table(now: now) == """
                shop: deploying
                release: /srv/r1
                listening: 127.0.0.1:8080
                in progress: deploy of /srv/r2, rolling-out, 1m5s, 2 queued
                  last step: slot 1 draining
                DEGRADED: a rollback failed; slots may run different releases (see RELEASE below)

                SLOT  PID  STATE  AGE  RSS  PSS  USS  SHARED  MEM  LEAK/h  RESTARTS  LAST REASON  RELEASE
                """)
        r.operation?.queued = 0
        r.operation?.progress = []
        r.degraded = false
        #expect(r.table(now: now).split(separator: "\n")[3] == "in progress: deploy of /srv/r2, rolling-out, 1m5s")
        #expect(!r.table(now: now).contains("DEGRADED"))
    }

    @Test(arguments: [
        (0.0, "0s"), (-30.0, "0s"), (59.4, "59s"), (59.5, "1m0s"), (3599.0, "59m59s"), (3600.0, "1h0m"),
        (86399.0, "23h59m"), (86400.0, "1d0h"), (90061.0, "1d1h"),
    ])
    func ages(seconds: Double, text: String) {
        let one = StatusReport(
            app: "a", pid: 1, state: "running", release: "/r", listeners: [], slots: 1, summary: "s",
            workers: [WorkerStatus(slot: 0, pid: 5, state: "ready", release: "/r", generation: 1, startedAt: now - seconds)])
        let row = one.table(now: now).split(separator: "\n").last.map(String.init) ?? ""
        #expect(row.split(separator: " ")[3] == text, "\(row)")
    }

    @Test func jsonKeysAreSnakeCase() throws {
        let data = try JSONEncoder().encode(
            report.workers[0].with {
                $0.crashLoop = true
                $0.nextStartIn = 1
            })
        let keys = try JSONDecoder().decode(ObjectKeys.self, from: data).keys
        #expect(
            keys == [
                "slot", "pid", "state", "release", "generation", "started_at", "ready_after", "rss_bytes", "pss_bytes",
                "uss_bytes", "restarts", "last_restart_reason", "consecutive_failures", "crash_loop", "next_start_in",
                "status_text", "leak_mib_per_hour", "seconds_to_limit", "limit_bytes",
            ])
        let top = try JSONDecoder().decode(ObjectKeys.self, from: try JSONEncoder().encode(report)).keys
        #expect(top == ["app", "pid", "state", "release", "listeners", "slots", "summary", "workers"])
    }

    /// A slot without a worker has no `pid` (a metrics audit: `"pid": 0`, which `kill` takes
    /// for the caller's own process group).
    @Test func minimalWorkerCarriesTheRequiredKeys() throws {
        let worker = WorkerStatus(slot: 2, pid: 0, state: "exited", release: "/r", generation: 1)
        let data = try JSONEncoder().encode(worker)
        let keys = try JSONDecoder().decode(ObjectKeys.self, from: data).keys
        #expect(keys.isSuperset(of: ["slot", "state", "release", "restarts", "crash_loop", "consecutive_failures"]))
        #expect(!keys.contains("pid"), "\(keys)")
        #expect(keys.allSatisfy { !$0.contains(where: \.isUppercase) })
        #expect(try JSONDecoder().decode(WorkerStatus.self, from: data) == worker)
        #expect(try JSONDecoder().decode(WorkerStatus.self, from: data).pid == 0)
    }

    @Test func jsonRoundTrip() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(report)
        #expect(try JSONDecoder().decode(StatusReport.self, from: data) == report)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""rss_bytes":157286400"#))
        #expect(text.contains(#""last_restart_reason":"readiness-timeout""#))
        #expect(!text.contains("rssBytes") && !text.contains("startedAt"))
    }

    @Test func decodesWhatAClientWrites() throws {
        let json = #"""
            {"slot":1,"pid":4711,"state":"ready","release":"/srv/r","generation":2,"started_at":1700000000.5,
             "rss_bytes":1048576,"pss_bytes":524288,"uss_bytes":262144,"restarts":1,"last_restart_reason":"max-age",
             "consecutive_failures":0,"crash_loop":false}
            """#
        let worker = try JSONDecoder().decode(WorkerStatus.self, from: Data(json.utf8))
        #expect(
            worker
                == WorkerStatus(
                    slot: 1, pid: 4711, state: "ready", release: "/srv/r", generation: 2, startedAt: 1_700_000_000.5,
                    rssBytes: 1_048_576, pssBytes: 524_288, ussBytes: 262_144, restarts: 1, lastRestartReason: "max-age"))
    }
}

/// A mold audit: `oom kills: 12 (slot 0: 2, slot 1: 1, slot 2: 1, slot 3: 2)`, whose parts add
/// up to 6; the other 6 were molds. The kills outside the workers are counted in the line too.
@Test func theOOMLineCountsKillsOutsideTheWorkers() {
    let status = OOMStatus(kills: 12, bySlot: ["0": 2, "1": 1, "2": 1, "3": 2], recent: [], marginBytes: 0, counterPath: nil)
    #expect(status.line(now: 0) == "oom kills: 12 (slot 0: 2, slot 1: 1, slot 2: 1, slot 3: 2, outside the workers: 6)")
    let molds = OOMStatus(kills: 2, bySlot: [:], recent: [], marginBytes: 0, counterPath: nil)
    #expect(molds.line(now: 0) == "oom kills: 2 (outside the workers: 2)")
    let workers = OOMStatus(kills: 2, bySlot: ["0": 2], recent: [], marginBytes: 0, counterPath: nil)
    #expect(workers.line(now: 0) == "oom kills: 2 (slot 0: 2)")
}

extension WorkerStatus {
    fileprivate func with(_ change: (inout WorkerStatus) -> Void) -> WorkerStatus {
        var copy = self
        change(&copy)
        return copy
    }
}
