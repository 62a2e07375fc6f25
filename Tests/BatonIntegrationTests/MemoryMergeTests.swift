import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension MemoryIntegration {
    /// `[memory] mergeable`: real baton, real workers, the host's real KSM state (read, never
    /// changed: /sys/kernel/mm/ksm/run is shared by the whole host).
    @Suite("memory.mergeable", .serialized)
    struct MemoryMergeTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }

        static func sections(mergeable: Bool) -> String {
            """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            timeout = "20s"
            [memory]
            mergeable = \(mergeable)
            [metrics]
            address = "127.0.0.1:0"
            """
        }

        @Test("every worker is marked mergeable; status, status --json and metrics carry shared and KSM figures and the ksmd note")
        func workersAreMarked() throws {
            let baton = try BatonHarness(workers: 2, command: [Self.worker, "--hold", "4"], sections: Self.sections(mergeable: true), tag: "ksm")
            defer { baton.stop() }
            let run = ProcFS.ksmRun()
            let note = MemoryMerge.daemonNote(run: run)
            let status = try baton.status()
            #expect(status.workers.count == 2)
            for w in status.workers {
                let stat = try #require(ProcFS.ksmStat(of: w.pid), "no ksm_stat for \(w.pid)")
                #expect(stat.mergeAny, "worker \(w.pid): \(ProcFS.read("/proc/\(w.pid)/ksm_stat") ?? "-")")
                #expect(w.ksmProfitBytes != nil, "\(w)")
                #expect((w.sharedBytes ?? 0) > 0, "\(w)")
            }
            #expect(status.ksm?.run == run?.split(whereSeparator: \.isWhitespace).first.map(String.init))
            #expect(status.ksm?.notes == (note.map { [$0] } ?? []))

            let table = try baton.cli(["status"])
            #expect(table.code == 0)
            let lines = table.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.hasPrefix("SLOT") && $0.contains("  USS  ") && $0.contains("SHARED  KSM ") }, "\(table.stdout)")
            if let note {
                // This host's ksmd is off: status says so, and baton logged it once at start.
                #expect(lines.contains("note: \(note)"), "\(table.stdout)")
                #expect(baton.process.stderrLines.filter { $0.contains(note) }.count == 1, "\(baton.process.stderrLines.suffix(20))")
            }

            // preflight measures every worker now: the metrics then show the figures.
            #expect(try baton.cli(["preflight"]).code == 0)
            let port = try #require(baton.metricsPort())
            let body = try #require(HTTP.get(port: port, path: "/metrics")).body
            for slot in 0..<2 {
                #expect(body.contains("baton_worker_shared_bytes{slot=\"\(slot)\""), "\(body)")
                #expect(body.contains("baton_worker_ksm_profit_bytes{slot=\"\(slot)\""), "\(body)")
            }
        }

        @Test("off by default: workers unmarked, no KSM column, no note, no KSM metric; SHARED still shown")
        func offByDefault() throws {
            let baton = try BatonHarness(workers: 1, sections: Self.sections(mergeable: false), tag: "noksm")
            defer { baton.stop() }
            let status = try baton.status()
            let w = try #require(status.workers.first)
            #expect(ProcFS.ksmStat(of: w.pid)?.mergeAny == false)
            #expect(status.ksm == nil && w.ksmProfitBytes == nil)
            #expect((w.sharedBytes ?? 0) > 0, "\(w)")
            let table = try baton.cli(["status"]).stdout
            #expect(table.contains("SHARED") && !table.contains("KSM") && !table.contains("memory.mergeable"), "\(table)")
            #expect(try baton.cli(["preflight"]).code == 0)
            let port = try #require(baton.metricsPort())
            let body = try #require(HTTP.get(port: port, path: "/metrics")).body
            #expect(body.contains("baton_worker_shared_bytes{") && !body.contains("baton_worker_ksm_profit_bytes"))
        }

        /// A preload library whose prctl refuses PR_SET_MEMORY_MERGE with EINVAL, as a kernel
        /// older than 6.4 does, and passes every other option to the kernel.
        static let refusingPrctl = """
            #define _GNU_SOURCE
            #include <errno.h>
            #include <stdarg.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            int prctl(int option, ...) {
                va_list ap;
                va_start(ap, option);
                unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
                unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
                va_end(ap);
                if (option == 67) { errno = EINVAL; return -1; }
                return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
            }
            """

        @Test("a kernel that refuses PR_SET_MEMORY_MERGE: workers still start unmarked, baton logs it once, status shows it")
        func kernelRefuses() throws {
            let dir = TestPaths.temporaryDirectory("ksmso")
            defer { TestPaths.remove(dir) }
            TestPaths.write(dir + "/refuse.c", Self.refusingPrctl)
            let cc = try TestProcess.run(["/usr/bin/cc", "-shared", "-fPIC", "-o", dir + "/refuse.so", dir + "/refuse.c"], timeout: .seconds(60))
            try #require(cc.code == 0, "cc: \(cc.stderr)")
            let baton = try BatonHarness(
                workers: 2, sections: Self.sections(mergeable: true), environment: ["LD_PRELOAD": dir + "/refuse.so"], tag: "ksmno")
            defer { baton.stop() }
            let line = MemoryMerge.refused(errno: EINVAL, errorText: "Invalid argument")
            let status = try baton.status()
            #expect(status.workers.count == 2 && status.workers.allSatisfy { $0.state == "ready" }, "\(status.workers)")
            for w in status.workers {
                #expect(ProcFS.ksmStat(of: w.pid)?.mergeAny == false, "worker \(w.pid)")
            }
            #expect(baton.process.stderrLines.filter { $0.contains(line) }.count == 1, "\(baton.process.stderrLines.suffix(20))")
            #expect(status.ksm?.notes.first == line, "\(String(describing: status.ksm))")
            // A restart spawns again and is refused again: still one line.
            #expect(try baton.cli(["reload"]).code == 0)
            #expect(baton.process.stderrLines.filter { $0.contains(line) }.count == 1)
        }

        @Test("mold mode: the mold is marked mergeable, and so is every worker it forks (the mark survives fork)")
        func moldAndForkedWorkersAreMarked() throws {
            let baton = try SecondIntegration.MoldTests.start(
                workers: 2, sections: SecondIntegration.MoldTests.sections + "\n[memory]\nmergeable = true", tag: "ksmmold")
            defer { baton.stop() }
            let status = try baton.status()
            let mold = try #require(status.molds?.first, "status shows the mold")
            for pid in [mold.pid] + status.workers.map(\.pid) {
                let stat = try #require(ProcFS.ksmStat(of: pid), "no ksm_stat for \(pid)")
                #expect(stat.mergeAny, "pid \(pid): \(ProcFS.read("/proc/\(pid)/ksm_stat") ?? "-")")
            }
        }

        @Test("check-config accepts the key and refuses a non-boolean with exit 2")
        func checkConfig() throws {
            let dir = TestPaths.temporaryDirectory("ksmcfg")
            defer { TestPaths.remove(dir) }
            let good = dir + "/good.toml"
            let bad = dir + "/bad.toml"
            let app = "[app]\nname = \"a\"\ncommand = [\"/bin/true\"]\ndirectory = \"\(dir)\"\nworkers = 1\n[memory]\n"
            TestPaths.write(good, app + "mergeable = true\n")
            TestPaths.write(bad, app + "mergeable = 1\n")
            let ok = try TestProcess.run([TestPaths.executable("baton"), "check-config", good], timeout: .seconds(30))
            #expect(ok.code == 0, "\(ok.stderr)")
            let refused = try TestProcess.run([TestPaths.executable("baton"), "check-config", bad], timeout: .seconds(30))
            #expect(refused.code == 2)
            #expect(refused.stderr.contains("memory.mergeable: expected a boolean, got an integer"), "\(refused.stderr)")
        }
    }
}
