import BatonCore
import BatonTestSupport
import BatonTestTraits
import Testing

/// baton under a real systemd (252 here) through the units `baton units` prints: socket
/// activation, `systemctl reload` as a synchronous rolling restart, a failing reload, a config
/// error that must not loop, and the shipped templates against `systemd-analyze verify`.
///
/// Each test runs one scenario of `scripts/systemd-test-driver.sh` in a fresh
/// `systemd-sandbox`; the driver reports `RESULT key=value` lines and the assertions are here.
@Suite(
    "real systemd (sandboxed user manager)", .serialized, .ownThread,
    .enabled(
        if: SystemdSandbox.isAvailable,
        "needs root, systemd and unshare (scripts/systemd-sandbox, or $BATON_SYSTEMD_SANDBOX)"))
struct RealSystemdTests {
    @Test("the socket unit activates baton; workers serve on its socket with its FileDescriptorName")
    func socketActivation() throws {
        let run = try SystemdSandbox.run("activate")
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["service_before_request"] == "inactive", "baton ran before the first connection\n\(run.transcript)")
        #expect(run["first_status"] == "200", "the request that activated baton was not answered\n\(run.transcript)")
        #expect(run["socket_fdname"] == "web")
        #expect(run["env_listen_fdnames"] == run["socket_fdname"], "\(run.transcript)")
        #expect(run["env_listen_pid"] == run["env_worker_pid"], "LISTEN_PID is not the worker's own pid\n\(run.transcript)")
        // RuntimeDirectory= reaches baton as $RUNTIME_DIRECTORY: the notify sockets live there.
        #expect(run["env_notify_socket"].hasPrefix(run["runtime_directory"] + "/notify/"), "\(run.transcript)")
        let status = try run.status("status_before")
        #expect(status.pid == Int32(run["main_pid"]), "baton is not the unit's MainPID (NotifyAccess=main)\n\(run.transcript)")
        #expect(status.state == "running")
        #expect(status.workers.count == 4 && status.workers.allSatisfy { $0.state == "ready" }, "\(run.transcript)")
        #expect(run["sub_state"] == "running")
        #expect(run["status_text"].hasPrefix("4/4 workers ready"), "STATUS= did not reach systemd\n\(run.transcript)")
        #expect(run["stop_rc"] == "0" && run["service_result"] == "success", "\(run.transcript)")
        print(
            "socket activation: first request answered after \(run["first_ms"]) ms, unit active after \(run["started_ms"]) ms; stop took \(run["stop_ms"]) ms")
    }

    @Test("systemctl reload is a rolling restart that returns when it finished, even past TimeoutStartSec=")
    func reload() throws {
        let run = try SystemdSandbox.run("reload")
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["reload_rc"] == "0", "\(run.transcript)")
        let before = try run.status("status_before")
        let after = try run.status("status_after")
        let oldPids = Set(before.workers.map(\.pid))
        let newPids = Set(after.workers.map(\.pid))
        #expect(before.workers.count == 4 && oldPids.count == 4, "\(run.transcript)")
        #expect(after.workers.count == 4, "old or extra workers left when systemctl reload returned\n\(run.transcript)")
        #expect(oldPids.isDisjoint(with: newPids), "a worker was not replaced: \(oldPids) → \(newPids)\n\(run.transcript)")
        #expect(after.workers.allSatisfy { $0.state == "ready" }, "\(run.transcript)")
        #expect(after.operation == nil, "the reload was still running when systemctl returned\n\(run.transcript)")
        #expect(newPids.contains(Int32(run["after_pid"]) ?? 0), "\(run.transcript)")
        // Four workers that take 0.75 s each to boot, one at a time: a reload that returned
        // before the rollout finished would be faster than this.
        let reloadMs = try #require(run.int("reload_ms"))
        let bootMs = Int((Double(run["boot_delay"]) ?? 0) * 1000)
        #expect(reloadMs >= 4 * bootMs, "systemctl reload returned after \(reloadMs) ms\n\(run.transcript)")
        // TimeoutStartSec=2s bounds a reload on 252; baton's EXTEND_TIMEOUT_USEC carries it past.
        #expect(reloadMs > 2000, "the reload was not longer than TimeoutStartSec=, nothing was shown\n\(run.transcript)")
        let load = run.load
        #expect(load.ok > 0 && load.failed == 0, "requests during the reload: \(run["load"])\n\(run.transcript)")
        #expect(run["active_after"] == "active")
        #expect(run["main_pid_after"] == run["main_pid"], "baton itself was restarted\n\(run.transcript)")
        print("systemctl reload of 4 workers (0.75 s boot each, surge): \(reloadMs) ms; \(load.ok) sequential requests during it, \(load.failed) failed")
    }

    @Test("a reload whose new workers fail makes systemctl reload fail and leaves the old workers serving")
    func failedReload() throws {
        let run = try SystemdSandbox.run("reload-fail")
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["reload_rc"] != "0" && !run["reload_rc"].isEmpty, "systemctl reload succeeded\n\(run.transcript)")
        #expect(run["reload_output"].contains("failed"), "\(run.transcript)")
        let before = try run.status("status_before")
        let after = try run.status("status_after")
        #expect(Set(after.workers.map(\.pid)) == Set(before.workers.map(\.pid)), "the old workers were replaced\n\(run.transcript)")
        #expect(after.workers.allSatisfy { $0.state == "ready" }, "\(run.transcript)")
        #expect(run["after_status"] == "200")
        #expect(before.workers.map(\.pid).contains(Int32(run["after_pid"]) ?? 0), "not answered by an old worker\n\(run.transcript)")
        let load = run.load
        #expect(load.ok > 0 && load.failed == 0, "requests during the failed reload: \(run["load"])\n\(run.transcript)")
        #expect(run["active_after"] == "active", "the service did not stay up\n\(run.transcript)")
        #expect(run["main_pid_after"] == run["main_pid"])
        #expect(run["second_reload_rc"] == "0", "a good reload after the failed one did not pass\n\(run.transcript)")
        print("failed systemctl reload returned exit \(run["reload_rc"]) after \(run["reload_ms"]) ms; \(load.ok) requests during it, \(load.failed) failed")
    }

    @Test("systemctl restart keeps the socket unit's socket under concurrent load: new baton, new workers, nothing refused")
    func restartKeepsSocket() throws {
        let run = try SystemdSandbox.run("restart")
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["restart_rc"] == "0", "\(run.transcript)")
        #expect(run["main_pid_after"] != run["main_pid"] && !run["main_pid_after"].isEmpty, "\(run.transcript)")
        #expect(run["active_after"] == "active" && run["socket_state"] == "active", "\(run.transcript)")
        let before = try run.status("status_before")
        let after = try run.status("status_after")
        #expect(Set(before.workers.map(\.pid)).isDisjoint(with: after.workers.map(\.pid)))
        let load = run.window("restart")
        print(
            "systemctl restart with 4 workers (0.75 s boot): \(run["restart_ms"]) ms; load during it: \(load); socket path afterwards: \(run["socket_path_after"])"
        )
        #expect(run["socket_path_after"] == "present" && run["same_inode"] == "yes", "\(run.transcript)")
        #expect(run["after_status"] == "200", "\(run.transcript)")
        #expect(load.ok > 0 && load.refused == 0, "requests during the restart: \(load)\n\(run.transcript)")
        #expect(load.failed == 0, "requests during the restart: \(load)\n\(run.transcript)")
    }

    @Test("a config error (exit 2) is not restarted, and the socket unit stays up")
    func configErrorDoesNotLoop() throws {
        let run = try SystemdSandbox.run("bad-config")
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["start_rc"] != "0", "\(run.transcript)")
        #expect(run["exec_main_status"] == "2", "\(run.transcript)")
        #expect(run["active_state"] == "failed", "\(run.transcript)")
        // Without RestartPreventExitStatus=2 systemd restarts 5 times, hits the start limit
        // and fails the socket unit too: the listening socket would close.
        #expect(run["n_restarts"] == "0", "a config error was restarted\n\(run.transcript)")
        #expect(run["socket_state"] == "active", "\(run.transcript)")
    }

    @Test("systemd-analyze verify: no unknown key, unknown section or parse failure in the templates or generated units")
    func verifyUnits() throws {
        let run = try SystemdSandbox.run("verify")
        try #require(run.code == 0, "\(run.transcript)")
        #expect(run["templates_bad"] == "0", "systemd/baton@.socket or baton@.service:\n\(run.transcript)")
        #expect(run["generated_bad"] == "0", "baton units output:\n\(run.transcript)")
        #expect(run["nosocket_bad"] == "0", "baton units --no-socket output:\n\(run.transcript)")
        // The control unit (Type=notify-reload, an unknown key) shows the grep catches both here.
        #expect((run.int("control_bad") ?? 0) >= 2, "the check cannot see problems on this systemd\n\(run.transcript)")
        print("systemd-analyze verify on systemd \(run["systemd_version"]): templates and generated units clean")
    }
}
