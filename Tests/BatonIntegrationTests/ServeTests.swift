import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// Real `baton serve` processes with real demo workers, sockets and load.
    /// Serialized: workers, baton and the load client share two cores.
    @Suite("baton serve")
    struct ServeTests {
        @Test("requests to the port are answered by all 4 workers")
        func allWorkersAnswer() throws {
            let baton = try BatonHarness(workers: 4, tag: "all")
            defer { baton.stop() }
            let status = try baton.status()
            let expected = Set(status.workers.map(\.pid))
            #expect(expected.count == 4)
            #expect(status.workers.allSatisfy { $0.state == "ready" })
            // Fresh connections land on whichever worker accepts first; keep
            // opening them until every worker has answered (bounded).
            var seen = Set<Int32>()
            for _ in 0..<400 where seen != expected {
                let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(10), maxRequests: 1)
                let report = load.finish()
                #expect(report.failed == 0)
                seen.formUnion(report.pids)
            }
            #expect(seen == expected)
        }

        @Test("kill -9 of a worker: a replacement becomes ready")
        func killedWorkerIsReplaced() throws {
            let baton = try BatonHarness(workers: 2, tag: "kill")
            defer { baton.stop() }
            let before = try baton.status()
            let victim = try #require(before.workers.first { $0.slot == 1 })
            #expect(kill(victim.pid, SIGKILL) == 0)
            let line = baton.process.waitForLine(timeout: .seconds(20)) {
                $0.contains("worker ready") && $0.contains("slot=1") && !$0.contains("pid=\(victim.pid)")
            }
            #expect(line != nil)
            let after = try baton.status()
            let slot1 = try #require(after.workers.first { $0.slot == 1 })
            #expect(slot1.pid != victim.pid)
            #expect(slot1.state == "ready")
            #expect(slot1.restarts == 1)
            #expect(slot1.lastRestartReason == "crash")
            #expect(after.workers.first { $0.slot == 0 }?.pid == before.workers.first { $0.slot == 0 }?.pid)
        }

        @Test("a worker that exits at once is retried with growing delays, visible in status")
        func crashLoopBacksOff() throws {
            let baton = try BatonHarness(
                workers: 1, command: [TestPaths.executable("baton-demo-worker"), "--fail-boot"], waitReady: false, tag: "loop")
            defer { baton.stop() }
            let looping = baton.process.waitForLine(containing: "is crash-looping", timeout: .seconds(30))
            #expect(looping != nil)
            let delays = baton.process.stderrLines.compactMap { line -> String? in
                guard let r = line.range(of: "restarts in ") ?? line.range(of: "next start in ") else { return nil }
                return String(line[r.upperBound...].prefix { $0 != " " })
            }
            #expect(Array(delays.prefix(3)) == ["1s", "2s", "4s"])
            let status = try baton.status()
            let slot = try #require(status.workers.first)
            #expect(slot.crashLoop)
            #expect(slot.consecutiveFailures >= 3)
            #expect(slot.restarts >= 2)
            #expect(status.summary.contains("crash loop in slot 0"))
            let table = try baton.cli(["status"])
            #expect(table.code == 0)
            #expect(table.stdout.contains("crash-loop"))
            // The output of the failing worker is forwarded with its slot and pid.
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("[slot 0 pid ") && $0.contains("boot failed: simulated") } != nil)
        }

        @Test("SIGHUP under keep-alive load replaces every worker with zero failed requests")
        func reloadUnderLoad() throws {
            let baton = try BatonHarness(workers: 4, tag: "hup")
            defer { baton.stop() }
            let before = Set(try baton.status().workers.map(\.pid))
            let load = LoadClient(port: baton.port, connections: 8, maxDuration: .seconds(90))
            #expect(load.waitForProgress(200))
            baton.process.signal(SIGHUP)
            let finished = baton.process.waitForLine(containing: "reload finished", timeout: .seconds(60))
            #expect(finished != nil)
            #expect(load.waitForProgress(200))
            let report = load.stop()
            print("reload under load: \(report)")
            #expect(report.failed == 0, "\(report)")
            let after = try baton.status()
            #expect(after.workers.count == 4)
            #expect(after.workers.allSatisfy { $0.state == "ready" && $0.lastRestartReason == "reload" })
            #expect(Set(after.workers.map(\.pid)).isDisjoint(with: before))
        }

        /// A hostile-app audit: `kill -USR1` of baton (a worker's, or a logrotate script's
        /// "reopen your logs") ended it silently and orphaned its workers; so did USR2, ALRM,
        /// VTALRM, PROF, IO, PWR, XCPU and the real-time signals; TTIN and TTOU stopped it.
        @Test("signals baton has no use for are logged and ignored; its workers get them back")
        func unusedSignalsAreIgnored() throws {
            let baton = try BatonHarness(workers: 1, tag: "sig")
            defer { baton.stop() }
            let pids = Set(try baton.status().workers.map(\.pid))
            // TTIN and TTOU (gunicorn's "one worker more, one less") stopped a baton run from a
            // terminal, silently (a habits audit; in an orphaned process group, as here, the
            // kernel drops them, silently too).
            baton.process.signal(SIGTTIN)
            #expect(
                baton.process.waitForLine(
                    containing: "received SIGTTIN: ignored (baton stops on SIGTERM or SIGINT and reloads on SIGHUP; the number of workers is [app] workers)",
                    timeout: .seconds(10)) != nil)
            // 37 is SIGRTMIN+3 with glibc (SIGRTMIN is 34).
            for sig in [SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGXCPU, SIGQUIT, SIGTTIN, SIGTTOU, 37] {
                baton.process.signal(sig)
            }
            // Within 10 s of the first, the rest are counted, not logged: baton still answers.
            let status = try baton.status()
            #expect(Set(status.workers.map(\.pid)) == pids, "nothing restarted")
            // A worker gets every signal's default: none blocked or ignored from baton's mask.
            let worker = try #require(pids.first)
            let procStatus = ProcFS.read("/proc/\(worker)/status") ?? ""
            for field in ["SigBlk:", "SigIgn:"] {
                let line = procStatus.split(separator: "\n").first { $0.hasPrefix(field) }
                let mask = line.flatMap { UInt64(String($0.dropFirst(field.count).filter { !$0.isWhitespace }), radix: 16) }
                #expect(mask.map { $0 & (1 << (UInt64(SIGUSR1) - 1)) } == 0, "\(field) \(String(describing: line))")
            }
        }

        /// A disk audit: `rm -rf` of the runtime directory's `notify/` made every later start
        /// fail (a deploy refused, a crash loop) until the folder was made again by hand; a
        /// control socket removed left the CLI unable to reach baton until it restarted.
        @Test("the runtime directory's folder and sockets removed from under baton come back")
        func removedRuntimeFilesComeBack() throws {
            let baton = try BatonHarness(workers: 2, tag: "rtd")
            defer { baton.stop() }
            unlink(baton.controlSocket)
            TestPaths.remove(baton.directory + "/run/notify")
            #expect(baton.process.waitForLine(containing: "/run/notify was removed while baton ran: made it again", timeout: .seconds(20)) != nil)
            #expect(baton.process.waitForLine(containing: "control socket \(baton.controlSocket) was removed: bound it again", timeout: .seconds(20)) != nil)
            #expect(baton.process.waitForLine(timeout: .seconds(20)) { $0.contains("notify socket") && $0.contains("was removed: bound it again") } != nil)
            let reload = try baton.cli(["reload"])
            #expect(reload.code == 0, "\(reload.stderr)")
            #expect(try baton.status().workers.allSatisfy { $0.state == "ready" })
        }

        @Test("baton reload returns when finished and reports progress; a reload with a bad config changes nothing")
        func reloadCommand() throws {
            let baton = try BatonHarness(workers: 2, tag: "rel")
            defer { baton.stop() }
            let ok = try baton.cli(["reload"])
            #expect(ok.code == 0, "\(ok.stderr)")
            #expect(ok.stdout.contains("slot 1: pid"))
            #expect(ok.stdout.contains("reload finished: 2 workers on \(baton.releaseDirectory)"))
            let pids = Set(try baton.status().workers.map(\.pid))

            let good = ProcFS.read(baton.configPath) ?? ""
            TestPaths.write(baton.configPath, good.replacingFirst("workers = 2", with: "workers = 2\nwokers = 3"))
            let bad = try baton.cli(["reload"])
            #expect(bad.code == 1)
            #expect(bad.stderr.contains("unknown key \"app.wokers\""), "\(bad.stderr)")
            #expect(bad.stderr.contains("nothing changed"))
            #expect(Set(try baton.status().workers.map(\.pid)) == pids)
            TestPaths.write(baton.configPath, good)
        }

        @Test("a reload whose new workers never become ready fails and leaves the old ones serving")
        func failedReloadKeepsOldWorkers() throws {
            let baton = try BatonHarness(workers: 2, tag: "frel")
            defer { baton.stop() }
            let pids = Set(try baton.status().workers.map(\.pid))
            let good = ProcFS.read(baton.configPath) ?? ""
            let worker = TestPaths.executable("baton-demo-worker")
            TestPaths.write(
                baton.configPath,
                good.replacingFirst("\"\(worker)\"]", with: "\"\(worker)\", \"--fail-boot\"]"))
            let result = try baton.cli(["reload"])
            #expect(result.code == 1)
            #expect(result.stderr.contains("exited during start (exit code 3)"), "\(result.stderr)")
            #expect(result.stderr.contains("boot failed: simulated"))
            #expect(result.stderr.contains("nothing changed"))
            // The old workers serve throughout. A new worker started beside the canary (the surge
            // starts several) is stopped when the canary fails and may still be exiting when the
            // reply comes: under two CPU hogs the status listed it once. It goes, bounded.
            let status = try baton.status()
            #expect(pids.isSubset(of: Set(status.workers.filter { $0.state == "ready" }.map(\.pid))), "\(status.workers)")
            #expect(status.state == "running")
            let settled = baton.waitForStatus(timeout: .seconds(10)) { Set($0.workers.map(\.pid)) == pids }
            #expect(settled != nil, "\((try? baton.status().workers) ?? [])")
            TestPaths.write(baton.configPath, good)
        }
    }
}

extension String {
    /// The string with the first occurrence of `target` replaced.
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = range(of: target) else { return self }
        return replacingCharacters(in: r, with: replacement)
    }

    /// `self` with a range replaced (no Foundation).
    func replacingCharacters(in range: Range<String.Index>, with replacement: String) -> String {
        String(self[..<range.lowerBound]) + replacement + String(self[range.upperBound...])
    }

    /// Whether `self` contains `other` (no Foundation).
    func range(of other: String) -> Range<String.Index>? {
        guard !other.isEmpty else { return nil }
        var start = startIndex
        while start < endIndex {
            if self[start...].hasPrefix(other) { return start..<index(start, offsetBy: other.count) }
            start = index(after: start)
        }
        return nil
    }
}
