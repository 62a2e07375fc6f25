import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension Integration {
    /// Outside systemd, a `baton serve` that finds the previous baton dead and its workers
    /// still serving takes their listening socket over instead of failing with EADDRINUSE.
    @Suite("take-over after a crash outside systemd")
    struct TakeOverTests {
        @Test("kill -9 baton, serve again: same port, 0 refused connections, the orphans drained")
        func takeOverAfterKill() throws {
            let first = try BatonHarness(workers: 2, tag: "tko")
            let port = first.port
            let orphans = try first.status().workers.map(\.pid)
            // pidfds opened while they are still baton's children: they name exactly these
            // processes, and become readable when they exit (whoever reaps them).
            let pidfds = orphans.map { ProcessWatch.open($0) }
            defer { pidfds.forEach { close($0) } }
            #expect(pidfds.allSatisfy { $0 >= 0 })
            let load = LoadClient(port: port, connections: 6, maxDuration: .seconds(120))
            #expect(load.waitForProgress(200))

            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)
            #expect(load.waitForProgress(200), "the orphaned workers keep serving")

            let second = try BatonHarness(workers: 2, tag: "tko", reuse: first.directory)
            defer { second.stop() }
            #expect(second.port == port)
            #expect(second.process.waitForLine(timeout: .seconds(10)) { $0.contains("took over") } != nil, "\(second.process.stderrLines.suffix(20))")
            for (pid, fd) in zip(orphans, pidfds) {
                #expect(ProcessWatch.waitExit(fd, timeout: .seconds(30)), "orphan \(pid) still running after the drain")
            }
            #expect(load.waitForProgress(200))
            let report = load.stop()
            print("take-over under load: \(report)")
            #expect(report.failures["refused"] == nil, "\(report)")
            let workers = try second.status().workers
            #expect(workers.count == 2)
            #expect(Set(workers.map(\.pid)).isDisjoint(with: orphans))
            #expect(workers.allSatisfy { $0.state == "ready" })
            #expect(second.stop(keepDirectory: true) == 0)
        }

        @Test("orphans that log every request survive kill -9 of baton and serve; the next baton relays their output")
        func loggingOrphansSurvive() throws {
            let command = [TestPaths.executable("baton-demo-worker"), "--log-requests"]
            let first = try BatonHarness(workers: 2, command: command, tag: "tkl")
            let port = first.port
            let orphans = try first.status().workers.map(\.pid)
            let pidfds = orphans.map { ProcessWatch.open($0) }
            defer { pidfds.forEach { close($0) } }
            #expect(pidfds.allSatisfy { $0 >= 0 })
            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)

            // Each answered request writes a line to the output pipe baton read: with no
            // reader left, that write raised SIGPIPE and killed the worker that answered.
            var answered: Set<Int32> = []
            for _ in 0..<20 {
                let answer = HTTP.get(port: port, path: "/")
                #expect(answer?.status == 200)
                if let pid = orphans.first(where: { answer?.body.contains("pid=\($0)") == true }) { answered.insert(pid) }
            }
            #expect(!answered.isEmpty)
            for (pid, fd) in zip(orphans, pidfds) {
                #expect(!ProcessWatch.waitExit(fd, timeout: .zero), "orphan \(pid) died after baton's death")
            }

            let load = LoadClient(port: port, connections: 4, maxDuration: .seconds(120))
            #expect(load.waitForProgress(100))
            let second = try BatonHarness(workers: 2, command: command, tag: "tkl", reuse: first.directory)
            defer { second.stop() }
            #expect(second.port == port)
            for (pid, fd) in zip(orphans, pidfds) {
                #expect(ProcessWatch.waitExit(fd, timeout: .seconds(30)), "orphan \(pid) still running after the drain")
            }
            #expect(load.waitForProgress(100))
            let report = load.stop()
            #expect(report.failures["refused"] == nil, "\(report)")
            // The orphans' lines came through the new baton, their drain included (relayed
            // as baton handles their exit: waited for, not assumed to be there already).
            for pid in answered {
                let relayed = second.process.waitForLine(timeout: .seconds(10)) {
                    $0.contains("[orphan slot") && $0.contains("pid \(pid)]") && $0.contains("GET / 200")
                }
                #expect(relayed != nil, "\(second.process.stderrLines.suffix(20))")
            }
            let drain = second.process.waitForLine(timeout: .seconds(10)) { $0.contains("[orphan slot") && $0.contains("draining") }
            #expect(drain != nil, "\(second.process.stderrLines.suffix(20))")
            #expect(second.stop(keepDirectory: true) == 0)
        }

        @Test("the crashed baton's notify sockets are removed by the baton that takes over; other files stay")
        func staleNotifySocketsRemoved() throws {
            let first = try BatonHarness(workers: 2, tag: "tkn")
            let notify = first.directory + "/run/notify"
            let firstPID = try first.status().pid
            let before = Self.entries(notify)
            // Named with baton's pid in base 36 (`WorkerContract.notifySocketName`).
            let firstSuffix = "-\(String(firstPID, radix: 36)).sock"
            #expect(before.count == 2 && before.allSatisfy { $0.hasSuffix(firstSuffix) }, "\(before)")
            TestPaths.write(notify + "/operator-note-\(firstPID).sock", "not a socket\n")
            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)

            let second = try BatonHarness(workers: 2, tag: "tkn", reuse: first.directory)
            defer { second.stop() }
            let secondPID = try second.status().pid
            let after = Self.entries(notify)
            #expect(!after.contains { $0.hasPrefix("w") && $0.hasSuffix(firstSuffix) }, "\(after)")
            #expect(after.filter { $0.hasSuffix("-\(String(secondPID, radix: 36)).sock") }.count == 2, "\(after)")
            #expect(after.contains("operator-note-\(firstPID).sock"))
            #expect(second.stop(keepDirectory: true) == 0)
        }

        /// Every start-up check runs before the first worker: the metrics port, which once came
        /// last (a re-audit: `serve` exited 1 with its workers left serving, orphaned), fails the
        /// start with nothing spawned, and the next serve starts afresh once the port is free.
        @Test("a metrics address in use fails the start before any worker: exit 1, the record names none, the next serve starts")
        func metricsInUseFailsBeforeAnyWorker() throws {
            // The Listener owns the socket: dropping it (nil) closes it.
            var squatter: Listener? = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 1)
            let metrics = try #require(squatter.flatMap { Sockets.localAddress($0.fd) })
            let sections = BatonHarness.defaultSections + "\n[metrics]\naddress = \"\(metrics)\""
            let first = try BatonHarness(workers: 2, sections: sections, waitReady: false, tag: "tkx")
            let code = first.process.wait(timeout: .seconds(30))
            #expect(code == 1, "baton did not fail: \(first.process.stderrLines.suffix(10))")
            #expect(first.process.stderrLines.contains { $0.contains("[metrics] address: bind \(metrics): Address already in use") })
            let text = try #require(ProcFS.read(first.directory + "/run/instance.json"))
            let record = try JSONDecoder().decode(InstanceRecordView.self, from: Data(text.utf8))
            // The old code's workers, by the pids its record names: stopped, not leaked.
            for worker in record.workers where worker.pid > 1 { kill(worker.pid, SIGKILL) }
            #expect(record.workers.isEmpty, "\(text)")
            #expect(HTTP.get(port: first.port, path: "/") == nil, "nothing serves the port")

            squatter = nil
            // Without [metrics]: its freed port may be the one the kernel gives the next listener
            // on port 0 (a full run saw exactly that), which the metrics bind would then find taken.
            let second = try BatonHarness(workers: 2, tag: "tkx", reuse: first.directory)
            defer { second.stop() }
            #expect(try second.status().workers.count == 2)
            #expect(second.stop(keepDirectory: true) == 0)
        }

        /// `instance.json` in full, to write back what a baton killed before it recorded its
        /// workers would have left.
        struct InstanceRecordEdit: Codable {
            struct ListenerRecord: Codable {
                var name: String
                var address: String
                var inode: UInt64?
            }
            struct WorkerRecord: Codable {
                var slot: Int
                var pid: Int32
                var startTime: UInt64
                var outputFD: Int32?
            }
            var version: Int
            var app: String
            var pid: Int32
            var startTime: UInt64
            var listeners: [ListenerRecord]
            var workers: [WorkerRecord]
        }

        /// Found by a drain audit: an orphan SIGKILLed at the next baton's stop timeout (its long
        /// requests cut) was logged "orphaned worker drained".
        @Test("an orphan that does not stop at SIGTERM is SIGKILLed at the stop timeout, and not logged as drained")
        func anOrphanKilledAtTheStopTimeoutDidNotDrain() throws {
            // Ignores SIGTERM, holds the inherited socket: ready once alive 200 ms.
            let app = [
                "/usr/bin/python3", "-c",
                "import signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); s = socket.socket(fileno=3); time.sleep(600)",
            ]
            let sections = """
                [listen]
                addresses = ["127.0.0.1:0"]
                [readiness]
                mode = "delay"
                delay = "200ms"
                [stop]
                timeout = "1s"
                """
            let first = try BatonHarness(workers: 1, command: app, sections: sections, tag: "tkk")
            let orphan = try #require(try first.status().workers.first?.pid)
            let pidfd = ProcessWatch.open(orphan)
            defer { close(pidfd) }
            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)
            let second = try BatonHarness(workers: 1, command: app, sections: sections, tag: "tkk", reuse: first.directory)
            defer { second.stop() }
            #expect(ProcessWatch.waitExit(pidfd, timeout: .seconds(30)), "orphan \(orphan) still running")
            let gone = second.process.waitForLine(timeout: .seconds(10)) {
                $0.contains("orphaned worker") && $0.contains("pid=\(orphan)") && !$0.contains("draining") && !$0.contains("still running")
            }
            #expect(gone?.contains("orphaned worker gone after its SIGKILL (requests in flight were cut)") == true, "\(second.process.stderrLines.suffix(20))")
            #expect(second.stop(keepDirectory: true) == 0)
        }

        /// A baton killed between spawning workers and writing them into `instance.json`
        /// (found by a crash audit: a SIGKILL as the first worker appeared made every later
        /// `baton serve` fail with EADDRINUSE; one during a deploy left a worker of the new,
        /// uncommitted release serving beside the next baton's for good).
        @Test(
            "workers left out of the record of a killed baton: the next serve finds them by the listening socket they share, takes it over and drains them",
            arguments: [1, 2])
        func unrecordedWorkersAreTakenOver(leftOut: Int) throws {
            let first = try BatonHarness(workers: 2, tag: "tku\(leftOut)")
            let port = first.port
            let orphans = try first.status().workers.map(\.pid)
            let pidfds = orphans.map { ProcessWatch.open($0) }
            defer { pidfds.forEach { close($0) } }
            #expect(pidfds.allSatisfy { $0 >= 0 })
            let load = LoadClient(port: port, connections: 4, maxDuration: .seconds(120))
            #expect(load.waitForProgress(100))
            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)

            let path = first.directory + "/run/instance.json"
            var record = try JSONDecoder().decode(InstanceRecordEdit.self, from: Data(try #require(ProcFS.read(path)).utf8))
            #expect(record.workers.count == 2)
            record.workers.removeFirst(leftOut)
            let fd = open(path, O_WRONLY | O_TRUNC)
            try #require(fd >= 0)
            let data = try JSONEncoder().encode(record)
            #expect(data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == data.count)
            close(fd)
            #expect(load.waitForProgress(100), "the orphaned workers keep serving")

            let second = try BatonHarness(workers: 2, tag: "tku\(leftOut)", reuse: first.directory)
            defer { second.stop() }
            #expect(second.port == port, "\(second.process.stderrLines.suffix(30))")
            for (pid, fd) in zip(orphans, pidfds) {
                #expect(ProcessWatch.waitExit(fd, timeout: .seconds(30)), "orphan \(pid) still running: \(second.process.stderrLines.suffix(20))")
            }
            #expect(load.waitForProgress(100))
            let report = load.stop()
            #expect(report.failed == 0, "\(report)")
            #expect(Set(try second.status().workers.map(\.pid)).isDisjoint(with: orphans))
            #expect(second.stop(keepDirectory: true) == 0)
        }

        /// Found by a crash audit: a worker's child that called setsid() and holds the listening
        /// socket was taken over as an "unrecorded worker" of the killed baton, or, inside an
        /// orphan's tree, left alone: it outlived every baton and the next serve failed on
        /// "Address already in use".
        @Test("a worker's child that left its group is no orphan after a crash: the next baton names it a stray and kills it at its stop")
        func anEscapedChildOfADeadBatonIsAStray() throws {
            let directory = TestPaths.temporaryDirectory("tkstray")
            defer { TestPaths.remove(directory) }
            let script = directory + "/worker.sh"
            TestPaths.write(
                script, "#!/bin/sh\nsetsid sleep 300 &\necho $! >> \(directory)/escapees\nexec \(TestPaths.executable("baton-demo-worker"))\n",
                mode: 0o755)
            func escapees() -> [pid_t] { (ProcFS.read(directory + "/escapees") ?? "").split(separator: "\n").compactMap { Int32($0) } }
            let first = try BatonHarness(workers: 1, command: [script], tag: "tkstray")
            let escapee = try #require(escapees().first)
            let watch = ProcessWatch.open(escapee)
            defer { close(watch) }
            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)

            let second = try BatonHarness(workers: 1, command: [script], tag: "tkstray", reuse: first.directory)
            defer { second.stop() }
            let named = second.process.waitForLine(timeout: .seconds(10)) { $0.contains("pid \(escapee) holds a socket") }
            #expect(named?.contains("not a worker; killed when baton stops") == true, "\(named ?? "no line")")
            #expect(!second.process.stderrLines.contains { $0.contains("pid \(escapee) ") && $0.contains("taken over as an orphaned worker") })
            #expect(second.process.waitForLine(timeout: .seconds(20)) { $0.contains("take-over finished") } != nil)
            #expect(!ProcessWatch.waitExit(watch, timeout: .zero), "it runs on until baton stops")
            #expect(second.stop(keepDirectory: true) == 0)
            #expect(ProcessWatch.waitExit(watch, timeout: .seconds(5)), "pid \(escapee) outlived the baton that took it over")
            for pid in escapees().dropFirst() {
                let w = ProcessWatch.open(pid)
                #expect(w < 0 || ProcessWatch.waitExit(w, timeout: .seconds(5)), "pid \(pid) outlived baton")
                if w >= 0 { close(w) }
            }
        }

        /// The part of `instance.json` the tests read.
        struct InstanceRecordView: Decodable {
            struct Worker: Decodable { var pid: Int32 }
            var workers: [Worker]
        }

        /// Names in `directory` (not . and ..).
        static func entries(_ directory: String) -> [String] {
            guard let dir = opendir(directory) else { return [] }
            defer { closedir(dir) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { names.append(name) }
            }
            return names.sorted()
        }

        @Test("new workers that never come up: the orphans keep serving; SIGTERM drains them before baton exits")
        func orphansServeUntilReplaced() throws {
            let first = try BatonHarness(workers: 2, tag: "tkf")
            let orphans = try first.status().workers.map(\.pid)
            let pidfds = orphans.map { ProcessWatch.open($0) }
            defer { pidfds.forEach { close($0) } }
            first.process.signal(SIGKILL)
            #expect(first.process.wait(timeout: .seconds(10)) == 128 + SIGKILL)

            // The same app, but its command now fails at once: a crash loop.
            let second = try BatonHarness(workers: 2, command: ["/bin/false"], waitReady: false, tag: "tkf", reuse: first.directory)
            defer { second.stop() }
            #expect(second.port == first.port)
            #expect(second.process.waitForLine(containing: "worker exited", timeout: .seconds(20)) != nil)
            let answer = HTTP.get(port: second.port, path: "/")
            #expect(answer?.status == 200)
            #expect(orphans.contains { answer?.body.contains("pid=\($0)") == true }, "\(answer?.body ?? "")")
            #expect(pidfds.allSatisfy { !ProcessWatch.waitExit($0, timeout: .zero) })

            second.process.signal(SIGTERM)
            #expect(second.process.wait(timeout: .seconds(30)) == 0)
            for fd in pidfds { #expect(ProcessWatch.waitExit(fd, timeout: .seconds(5)), "an orphan outlived baton") }
        }

        /// The first baton could not write its record (a full runtime directory), so the file
        /// still names the dead baton it took over from, and that record's socket inode is the
        /// one its own workers hold: the second serve took them for that baton's orphans
        /// (found by last stop's operator audit; reproduced on a 64 KiB tmpfs).
        @Test("a second baton serve while the first runs, with a stale record of a dead baton: refused by the control socket, nothing taken over")
        func refusedByTheControlSocketWhenTheRecordIsStale() throws {
            let first = try BatonHarness(workers: 2, tag: "tks")
            defer { first.stop() }
            let before = try first.status()
            let path = first.directory + "/run/instance.json"
            var record = try JSONDecoder().decode(InstanceRecordEdit.self, from: Data(try #require(ProcFS.read(path)).utf8))
            let dead = try TestProcess.run(["/bin/sh", "-c", "echo $$"])
            record.pid = try #require(Int32(dead.stdout.split(separator: "\n").first ?? ""))
            record.startTime = 1
            record.workers = []
            TestPaths.write(path, String(decoding: try JSONEncoder().encode(record), as: UTF8.self))
            let second = try TestProcess.run([TestPaths.executable("baton"), "serve", "--config", first.configPath], timeout: .seconds(30))
            #expect(second.code == 2, "\(second.stderr)")
            #expect(second.stderr.contains("already running") && second.stderr.contains("control socket"), "\(second.stderr)")
            #expect(!second.stderr.contains("taken over") && !second.stderr.contains("took over"), "\(second.stderr)")
            let after = try first.status()
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
            #expect(HTTP.get(port: first.port, path: "/")?.status == 200)
        }

        /// A multi-app audit: two configs sharing only a runtime directory, started at once,
        /// both ran (3 of 9 starts; at the first try under systemd): neither had written its
        /// record when the other looked. Here the first's record is removed, as if not yet
        /// written, and the second has a control socket of its own.
        @Test("another app's baton serve on the same runtime directory, before the first's record is written: refused by its lock")
        func refusedByTheRuntimeDirectorysLock() throws {
            let first = try BatonHarness(workers: 1, tag: "tkr")
            defer { first.stop() }
            let before = try first.status()
            #expect(unlink(first.directory + "/run/instance.json") == 0)
            let other = TestPaths.temporaryDirectory("tkr2")
            defer { TestPaths.remove(other) }
            let text = try #require(ProcFS.read(first.configPath))
                .replacing("name = \"test\"", with: "name = \"other\"")
                .replacing(first.directory + "/state", with: other + "/state")
                .replacing(first.controlSocket, with: other + "/control.sock")
            TestPaths.write(other + "/baton.toml", text)
            let second = try TestProcess.run([TestPaths.executable("baton"), "serve", "--config", other + "/baton.toml"], timeout: .seconds(30))
            #expect(second.code == 2, "\(second.stderr)")
            #expect(second.stderr.contains("is in use by another baton (pid \(before.pid)): two batons must not share a runtime directory"), "\(second.stderr)")
            #expect(try first.status().workers.map(\.pid) == before.workers.map(\.pid))
            #expect(HTTP.get(port: first.port, path: "/")?.status == 200)
        }

        @Test("a second baton serve while the first runs: one line, exit 2, the first untouched")
        func refusedWhileAlive() throws {
            let first = try BatonHarness(workers: 1, tag: "tka")
            defer { first.stop() }
            let before = try first.status()
            let second = try TestProcess.run([TestPaths.executable("baton"), "serve", "--config", first.configPath], timeout: .seconds(30))
            #expect(second.code == 2, "\(second.stderr)")
            #expect(second.stderr.contains("already running") && second.stderr.contains("pid \(before.pid)"), "\(second.stderr)")
            let after = try first.status()
            #expect(after.workers.map(\.pid) == before.workers.map(\.pid))
            #expect(HTTP.get(port: first.port, path: "/")?.status == 200)
        }
    }
}
