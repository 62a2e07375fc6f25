import BatonCore
import FoundationEssentials
import Testing

/// The reply lines as clients read them today, byte for byte: a refactor of `ControlReply`
/// must keep every kind encoding to these lines and decoding from them.
@Suite struct ControlReplyWireTests {
    static let history = HistoryEntry(
        kind: .deploy, release: "/srv/r2", previousRelease: "/srv/r1", outcome: .rolledBack, detail: "x", startedAt: 5, duration: 1,
        uid: 0)
    static let preflight = PreflightReport(
        fits: true, summary: "fits", strategy: "surge", needBytes: 200, haveBytes: 500, binding: "host MemAvailable", budgetBytes: 1000,
        budgetSource: "configured", workersPSSBytes: 300, footprintBytes: 100,
        limits: [.init(kind: "host MemAvailable", availableBytes: 500)], rolledAhead: [1])
    static let preflightJSON =
        #"{"binding":"host MemAvailable","budget_bytes":1000,"budget_source":"configured","fits":true,"footprint_bytes":100,"have_bytes":500,"limits":[{"available_bytes":500,"kind":"host MemAvailable"}],"need_bytes":200,"rolled_ahead":[1],"strategy":"surge","summary":"fits","workers_pss_bytes":300}"#
    static let releases = ReleasesReport(
        directory: "/srv/releases", keep: 5, releases: [ReleaseListing(name: "r1", path: "/srv/releases/r1", mark: .inUse, lastUsedAt: 1)])
    static let releasesJSON =
        #"{"directory":"/srv/releases","keep":5,"releases":[{"last_used_at":1,"mark":"in-use","name":"r1","path":"/srv/releases/r1"}]}"#
    static let pruned = ReleasesReport(directory: "/srv/releases", keep: 5, releases: [], removed: ["/srv/releases/r0"])
    static let status: StatusReport = {
        var report = StatusReport(
            app: "shop", pid: 1, state: "running", release: "/srv/r1", listeners: ["127.0.0.1:8080"], slots: 1, summary: "1/1 ready",
            workers: [
                WorkerStatus(slot: 0, pid: 7, state: "ready", release: "/srv/r1", generation: 1, restarts: 1, lastRestartReason: .exitedDuringStart)
            ])
        report.degraded = true
        return report
    }()

    /// Each reply kind and its recorded line.
    static let recorded: [(ControlReply, String)] = [
        (.progress("slot 0: starting"), #"{"event":"progress","message":"slot 0: starting","v":1}"#),
        (.success("pong"), #"{"message":"pong","ok":true,"v":1}"#),
        (.success("dry run: nothing changed", details: ["a", "b"]), #"{"details":["a","b"],"message":"dry run: nothing changed","ok":true,"v":1}"#),
        (.failure("baton is stopping"), #"{"error":"baton is stopping","ok":false,"v":1}"#),
        (.failure("deploy failed", code: 4, details: ["out"]), #"{"code":4,"details":["out"],"error":"deploy failed","ok":false,"v":1}"#),
        (
            .success(payload: .history([history])),
            #"{"history":[{"detail":"x","duration":1,"kind":"deploy","outcome":"rolled-back","previous_release":"/srv/r1","release":"/srv/r2","started_at":5,"uid":0}],"ok":true,"v":1}"#
        ),
        (
            .success("fits", details: ["d"], payload: .preflight(preflight)),
            #"{"details":["d"],"message":"fits","ok":true,"preflight":"# + preflightJSON + #","v":1}"#
        ),
        (
            .failure("does not fit", code: 1, details: ["d"], preflight: preflight),
            #"{"code":1,"details":["d"],"error":"does not fit","ok":false,"preflight":"# + preflightJSON + #","v":1}"#
        ),
        (.success(payload: .releases(releases)), #"{"ok":true,"releases":"# + releasesJSON + #","v":1}"#),
        (
            .success("removed 1 release folder", payload: .releases(pruned)),
            #"{"message":"removed 1 release folder","ok":true,"releases":{"directory":"/srv/releases","keep":5,"releases":[],"removed":["/srv/releases/r0"]},"v":1}"#
        ),
        (
            .success(payload: .status(status)),
            #"{"ok":true,"status":{"app":"shop","degraded":true,"listeners":["127.0.0.1:8080"],"pid":1,"release":"/srv/r1","slots":1,"state":"running","summary":"1/1 ready","workers":[{"consecutive_failures":0,"crash_loop":false,"generation":1,"last_restart_reason":"exited during start","pid":7,"release":"/srv/r1","restarts":1,"slot":0,"state":"ready"}]},"v":1}"#
        ),
    ]

    @Test func everyReplyKindKeepsItsLine() throws {
        for (reply, line) in Self.recorded {
            #expect(String(decoding: ControlProtocol.encodeLine(reply), as: UTF8.self) == line + "\n")
            #expect(try JSONDecoder().decode(ControlReply.self, from: Data(line.utf8)) == reply)
        }
    }
}
