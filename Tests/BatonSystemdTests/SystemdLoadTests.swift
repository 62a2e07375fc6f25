import BatonCore
import BatonTestSupport
import Testing

/// baton under a real systemd and concurrent keep-alive load: the FD store across restart,
/// crash and config change, `baton upgrade` (good and bad binary), kill -9, and the watchdog.
/// The scenarios are `scripts/systemd-load-driver.sh`'s; in the same serialized suite as the
/// others, so that no two sandboxes share the CPU.
extension RealSystemdTests {
    @Test("FD store: restart and kill -9 keep baton's own sockets (same inode, nothing refused); a dropped address is removed")
    func fdStore() throws {
        let run = try SystemdSandbox.run("fdstore", driver: .load)
        try #require(run.code == 0, "\(run.transcript)")
        let inode = run["inode_start"]
        try #require(!inode.isEmpty && !run["extra_inode_start"].isEmpty, "baton did not listen on both paths\n\(run.transcript)")

        // systemctl restart: a new baton, the same two listening sockets.
        #expect(run["restart_rc"] == "0", "\(run.transcript)")
        #expect(run["main_pid_restart"] != run["main_pid"], "\(run.transcript)")
        #expect(run["inode_restart"] == inode, "a new socket after systemctl restart\n\(run.transcript)")
        #expect(run["extra_inode_restart"] == run["extra_inode_start"], "\(run.transcript)")
        let restart = run.window("restart")
        #expect(restart.ok > 0 && restart.refused == 0 && restart.failed == 0, "during the restart: \(restart)\n\(run.transcript)")

        // A crash: Restart=on-failure, and the sockets come back from the store.
        #expect(run["main_pid_crash"] != run["main_pid_restart"] && run["crashed_pid_state"] == "gone", "\(run.transcript)")
        #expect((run.int("n_restarts") ?? 0) >= 1, "\(run.transcript)")
        #expect(run["inode_crash"] == inode, "a new socket after the crash\n\(run.transcript)")
        #expect(run["extra_inode_crash"] == run["extra_inode_start"], "\(run.transcript)")
        let crash = run.window("crash")
        #expect(crash.ok > 0, "during the crash: \(crash)\n\(run.transcript)")
        // systemd SIGKILLs the workers with baton: at most one request per open connection
        // (see killNine for the rare failed connect at that instant).
        #expect(crash.refused + crash.failed <= crash.connections, "during the crash: \(crash)\n\(run.transcript)")

        // The extra address left the config: FDSTOREREMOVE=1, nothing holds that socket now.
        #expect(run["stale_restart_rc"] == "0")
        #expect(run["inode_stale"] == "none", "the dropped socket still listens (kept in the FD store)\n\(run.transcript)")
        #expect(run["stale_main_inode"] == inode, "\(run.transcript)")
        #expect(run["stale_curl_rc"] == "7", "connecting to the dropped socket: curl exit \(run["stale_curl_rc"])\n\(run.transcript)")

        // stop + start empties the store: a fresh socket (the README says so).
        #expect(run["stopped_rc"] == "0" && run["start_rc"] == "0")
        #expect(!run["inode_stop_start"].isEmpty && run["inode_stop_start"] != inode, "\(run.transcript)")
        #expect(run["after_status"] == "200", "\(run.transcript)")
        print(
            "FD store: restart in \(run["restart_ms"]) ms, load \(restart); kill -9 → serving again after \(run["crash_ms"]) ms, load \(crash)"
        )
    }

    @Test("baton upgrade under systemd and load: same MainPID, same workers, no failed request; a bad binary changes nothing")
    func upgradeUnderSystemd() throws {
        let run = try SystemdSandbox.run("upgrade", driver: .load)
        try #require(run.code == 0, "\(run.transcript)")
        let before = try run.status("status_before")
        #expect(run["upgrade_rc"] == "0", "\(run.transcript)")
        #expect(run["main_pid_upgrade"] == run["main_pid"], "MainPID changed\n\(run.transcript)")
        let upgraded = try run.status("status_upgrade")
        #expect(upgraded.pid == before.pid)
        #expect(Set(upgraded.workers.map(\.pid)) == Set(before.workers.map(\.pid)), "workers replaced\n\(run.transcript)")
        #expect(upgraded.workers.count == 4 && upgraded.workers.allSatisfy { $0.state == "ready" }, "\(run.transcript)")
        #expect(run["active_upgrade"] == "active", "\(run.transcript)")
        let upgrade = run.window("upgrade")
        #expect(upgrade.ok > 0 && upgrade.refused == 0 && upgrade.failed == 0, "during the upgrade: \(upgrade)\n\(run.transcript)")
        #expect(run["reload_after_upgrade_rc"] == "0", "systemctl reload after the upgrade\n\(run.transcript)")

        // /bin/false fails `upgrade --check`: nothing changes.
        #expect(run["bad_rc"] == "1", "\(run.transcript)")
        #expect(run["bad_output"].contains("nothing changed"), "\(run.transcript)")
        #expect(run["main_pid_bad"] == run["main_pid"], "\(run.transcript)")
        let reloaded = try run.status("status_reloaded")
        let bad = try run.status("status_bad")
        #expect(Set(bad.workers.map(\.pid)) == Set(reloaded.workers.map(\.pid)), "workers changed\n\(run.transcript)")
        #expect(bad.workers.allSatisfy { $0.state == "ready" } && run["active_bad"] == "active", "\(run.transcript)")
        let badWindow = run.window("bad")
        #expect(badWindow.ok > 0 && badWindow.refused == 0 && badWindow.failed == 0, "\(badWindow)\n\(run.transcript)")
        print("baton upgrade under systemd: \(run["upgrade_ms"]) ms, load \(upgrade); bad binary: exit \(run["bad_rc"]), load \(badWindow)")
    }

    @Test("kill -9 of baton: systemd restarts it on the same socket; at most one failed request per open connection")
    func killNine() throws {
        let run = try SystemdSandbox.run("kill9", driver: .load)
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["main_pid_after"] != run["main_pid"] && run["killed_pid_state"] == "gone", "\(run.transcript)")
        #expect(run["n_restarts"] == "1", "\(run.transcript)")
        #expect(run["old_workers_left"] == "0", "old workers still running\n\(run.transcript)")
        let after = try run.status("status_after")
        #expect(after.workers.count == 4 && after.workers.allSatisfy { $0.state == "ready" }, "\(run.transcript)")
        #expect(run["same_inode"] == "yes", "the socket unit's socket was replaced\n\(run.transcript)")
        let load = run.window("kill")
        #expect(load.ok > 0, "\(load)\n\(run.transcript)")
        // systemd SIGKILLs the whole cgroup: the request in flight on a connection fails
        // (reset, empty reply). Rarely (about 1 run in 20 here) a connect at the instant of
        // the kill fails too, though the socket stays the same, listening with a 1024 backlog;
        // it counts against the same bound of one failure per open connection.
        #expect(load.refused + load.failed <= load.connections, "more than one failure per connection: \(load)\n\(run.transcript)")
        print(
            "kill -9 of baton: new MainPID after \(run["kill_ms"]) ms, all workers ready after \(run["kill_ready_ms"]) ms; "
                + "in-flight requests failed: \(load.failed), refused: \(load.refused) (of \(load.connections) connections); load \(load)")
    }

    @Test("a hung baton (SIGSTOP) is killed by the watchdog and restarted; nothing of it is left")
    func watchdog() throws {
        let run = try SystemdSandbox.run("watchdog", driver: .load)
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["watchdog_usec"] == "2s", "\(run.transcript)")
        #expect(!run["main_pid_after"].isEmpty && run["main_pid_after"] != run["main_pid"], "not restarted\n\(run.transcript)")
        #expect((run.int("n_restarts") ?? 0) >= 1, "\(run.transcript)")
        #expect(run["results_seen"].contains(" watchdog "), "systemd did not stop it for the watchdog\n\(run.transcript)")
        #expect(run["hung_pid_state"] == "gone", "the frozen baton is still there\n\(run.transcript)")
        #expect(run["old_workers_left"] == "0", "its workers are still running\n\(run.transcript)")
        let after = try run.status("status_after")
        #expect(after.workers.count == 4 && after.workers.allSatisfy { $0.state == "ready" }, "\(run.transcript)")
        #expect(run["after_status"] == "200", "\(run.transcript)")
        print("watchdog (WatchdogSec=2s, TimeoutAbortSec=2s): frozen baton replaced after \(run["back_ms"]) ms")
    }
}
