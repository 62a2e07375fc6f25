import BatonCore
import BatonTestSupport
import Testing

/// A baton killed in the middle of a deploy, under a real systemd and load: the restarted
/// baton serves the persisted release (the deploy was never committed), nothing of the killed
/// one is left, history says the deploy was interrupted, and the deploy can simply be rerun.
/// The scenario is `scripts/systemd-load-driver.sh crash-mid-deploy` (socket unit).
extension RealSystemdTests {
    @Test("kill -9 of baton mid-deploy: back on the persisted release r1, no orphans, deploy recorded as interrupted, a rerun succeeds")
    func crashMidDeploy() throws {
        let run = try SystemdSandbox.run("crash-mid-deploy", driver: .load)
        try #require(run.code == 0, "\(run.transcript)")
        try #require(run["mid_deploy"] == "yes", "the deploy never had slots on both releases\n\(run.transcript)")
        let r1 = try run.status("status_before").release
        let r2 = r1.replacingSuffix("/r1", with: "/r2")
        let atKill = try run.status("status_at_kill")
        #expect(atKill.operation?.kind == "deploy" && Set(atKill.workers.map(\.release)) == [r1, r2], "\(run.transcript)")

        // systemd restarted baton; the killed one and every process it had are gone.
        #expect(run["kill_rc"] == "0" && run["active_after"] == "active", "\(run.transcript)")
        #expect(run["main_pid_after"] != run["main_pid"] && run["killed_pid_state"] == "gone", "\(run.transcript)")
        #expect(run["n_restarts"] == "1", "\(run.transcript)")
        #expect(!run["old_workers"].isEmpty && run["old_workers_left"] == "0", "workers of the killed baton still run\n\(run.transcript)")

        // The deploy was never committed: every worker of the new baton runs r1, ready.
        let after = try run.status("status_after")
        #expect(after.release == r1 && after.operation == nil, "\(run.transcript)")
        #expect(after.workers.count == 4 && after.workers.allSatisfy { $0.state == "ready" && $0.release == r1 }, "\(run.transcript)")
        #expect(run["deploy_rc"] != "0", "the interrupted deploy's client exited 0\n\(run.transcript)")
        let history = try run.json([HistoryEntry].self, "history_after")
        #expect(!history.contains { $0.release == r2 && $0.outcome == .succeeded }, "\(history)")
        #expect(history.last?.kind == .deploy && history.last?.release == r2 && history.last?.outcome == .interrupted, "\(history)")

        // Under load: requests answered after the restart; at most one failure per open
        // connection at the kill (systemd SIGKILLs the cgroup), as in killNine.
        let load = run.window("crash")
        #expect(load.ok > 0 && load.refused + load.failed <= load.connections, "\(load)\n\(run.transcript)")

        // The same deploy again goes through.
        #expect(run["redeploy_rc"] == "0", "\(run.transcript)")
        let final = try run.status("status_final")
        #expect(final.release == r2 && final.workers.count == 4 && final.workers.allSatisfy { $0.state == "ready" && $0.release == r2 }, "\(run.transcript)")
        let finalHistory = try run.json([HistoryEntry].self, "history_final")
        #expect(finalHistory.last?.release == r2 && finalHistory.last?.outcome == .succeeded, "\(finalHistory)")
        print(
            "kill -9 mid-deploy (after \(run["mid_deploy_ms"]) ms of the deploy): new MainPID after \(run["kill_ms"]) ms, "
                + "all workers ready on r1 after \(run["kill_ready_ms"]) ms; deploy client exit \(run["deploy_rc"]); load \(load); "
                + "rerun of the deploy: exit \(run["redeploy_rc"]) in \(run["redeploy_ms"]) ms")
    }
}

extension String {
    fileprivate func replacingSuffix(_ suffix: String, with replacement: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + replacement : self
    }
}
