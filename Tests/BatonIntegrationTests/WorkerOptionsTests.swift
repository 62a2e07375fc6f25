import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// `[app]` user and environment file, the readiness modes, and journal logs.
    @Suite("worker options")
    struct WorkerOptionsTests {
        @Test("workers run as [app] user, with the environment file and [app.environment]")
        func userAndEnvironment() throws {
            let baton = try BatonHarness(
                workers: 1,
                extraApp: """
                    user = "nobody"
                    environment_file = "ENVFILE"
                    [app.environment]
                    FROM_CONFIG = "config"
                    SHARED = "config wins"
                    """.replacingOccurrences("ENVFILE", with: "/tmp/baton-envfile-\(getpid())"),
                tag: "user",
                beforeStart: { directory in
                    chmod(directory, 0o755)
                    TestPaths.write("/tmp/baton-envfile-\(getpid())", "# comment\nFROM_FILE=file\nexport SHARED=\"file\"\n")
                })
            defer {
                baton.stop()
                unlink("/tmp/baton-envfile-\(getpid())")
            }
            let worker = try #require(try baton.status().workers.first)
            let status = ProcFS.read("/proc/\(worker.pid)/status") ?? ""
            let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
            #expect(uidLine.split(separator: "\t").dropFirst().allSatisfy { $0 == "65534" }, "\(uidLine)")
            let env = try #require(HTTP.get(port: baton.port, path: "/env")).body
            #expect(env.contains("FROM_FILE=file\n"))
            #expect(env.contains("FROM_CONFIG=config\n"))
            #expect(env.contains("SHARED=config wins\n"))
            // The user's own, as systemd's User= gives (a contract audit: baton's HOME=/root).
            for line in ["HOME=/nonexistent", "USER=nobody", "LOGNAME=nobody", "SHELL=/usr/sbin/nologin"] {
                #expect(env.contains(line + "\n"), "\(line) in \(env)")
            }
        }

        /// An operator audit (2 of 2: root to nobody, nobody to daemon): a reload that changed
        /// `[app] user` failed with a readiness timeout, "sd_notify failed: Permission denied":
        /// the notify directory was 0700 and the first user's.
        @Test("a reload may change [app] user: the new workers reach their notify sockets")
        func reloadChangesTheUser() throws {
            let baton = try BatonHarness(workers: 1, tag: "userrl", beforeStart: { directory in chmod(directory, 0o755) })
            defer { baton.stop() }
            let good = try #require(ProcFS.read(baton.configPath))
            TestPaths.write(baton.configPath, good.replacingOccurrences("[app]\n", with: "[app]\nuser = \"nobody\"\n"))
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            let worker = try #require(try baton.status().workers.first)
            let uidLine = (ProcFS.read("/proc/\(worker.pid)/status") ?? "").split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
            #expect(uidLine.split(separator: "\t").dropFirst().allSatisfy { $0 == "65534" }, "\(uidLine)")
        }

        @Test("exec readiness: ready when the probe exits 0, probed again until then")
        func execReadiness() throws {
            let directory = TestPaths.temporaryDirectory("exec")
            defer { TestPaths.remove(directory) }
            let counter = directory + "/probes"
            let baton = try BatonHarness(
                workers: 1,
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    mode = "exec"
                    probe = ["/bin/sh", "-c", "n=$(cat \(counter) 2>/dev/null || echo 0); n=$((n+1)); echo $n > \(counter); [ $n -ge 3 ] && kill -0 $BATON_WORKER_PID"]
                    probe_interval = "100ms"
                    timeout = "20s"
                    """, tag: "exec")
            defer { baton.stop() }
            #expect(ProcFS.read(counter) == "3\n")
            #expect(try baton.status().workers.first?.state == "ready")
        }

        @Test("delay readiness, and a readiness timeout kills a worker that never becomes ready")
        func delayAndTimeout() throws {
            let delayed = try BatonHarness(
                workers: 2,
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    mode = "delay"
                    delay = "200ms"
                    """, tag: "delay")
            let ready = try delayed.status().workers
            delayed.stop()
            #expect(ready.allSatisfy { $0.state == "ready" && ($0.readyAfter ?? 0) >= 0.2 })

            let never = try BatonHarness(
                workers: 1, command: [TestPaths.executable("baton-demo-worker"), "--never-ready"],
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    mode = "notify"
                    timeout = "500ms"
                    """, waitReady: false, tag: "never")
            defer { never.stop() }
            // A docs audit: the line named neither READY=1 nor the mode to choose instead.
            let line =
                "worker not ready after 500ms (no READY=1 on its NOTIFY_SOCKET; for an app that sends none, [readiness] mode = \"delay\" or \"exec\"): killing it"
            #expect(never.process.waitForLine(containing: line, timeout: .seconds(10)) != nil)
            #expect(never.process.waitForLine(containing: "restarts in", timeout: .seconds(10)) != nil)
            let slot = try #require(try never.status().workers.first)
            #expect(slot.lastRestartReason == "readiness-timeout")
        }

        @Test("under journald (JOURNAL_STREAM names stderr) every line carries a priority prefix")
        func journalPrefixes() throws {
            let baton = try BatonHarness(workers: 1, tag: "jrnl", journalStream: true)
            defer { baton.stop() }
            let lines = baton.process.stderrLines
            #expect(!lines.isEmpty)
            #expect(lines.allSatisfy { $0.hasPrefix("<") && $0.dropFirst(2).hasPrefix(">") }, "\(lines.prefix(3))")
            #expect(lines.contains { $0.hasPrefix("<6>all 1 workers ready") })
        }
    }
}

extension String {
    /// Every occurrence of `target` replaced (no Foundation).
    func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
