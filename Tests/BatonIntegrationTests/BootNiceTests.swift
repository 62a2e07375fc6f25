import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension SecondIntegration {
    /// `[readiness] boot_nice`: a new worker boots at a lower CPU priority and every thread of
    /// its tree gets baton's priority back once it is ready.
    @Suite("boot priority")
    struct BootNiceTests {
        static func sections(_ nice: Int) -> String {
            """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            mode = "notify"
            timeout = "20s"
            boot_nice = \(nice)
            [stop]
            timeout = "10s"
            """
        }

        /// Nice values of every thread of every process in the tree rooted at `pid`.
        static func treeNice(_ pid: pid_t) -> [Int32] {
            ProcFS.tree(of: pid).flatMap { member in ProcessPriority.threads(of: member).compactMap { ProcessPriority.nice(of: member, thread: $0) } }
        }

        @Test("a worker boots 10 nicer than baton and its whole tree is back at baton's priority once ready; deploys too, 0 failed requests")
        func bootsNicerThenRestored() throws {
            let baton = try BatonHarness(
                workers: 2, command: [TestPaths.executable("baton-demo-worker"), "--boot-delay", "3"], sections: Self.sections(10),
                waitReady: false, tag: "bn")
            defer { baton.stop() }
            let own = try #require(ProcessPriority.nice(of: baton.process.pid))
            // While it boots (3 s): its main thread runs at baton's nice value + 10.
            let started = try #require(baton.process.waitForLine(containing: "worker started", timeout: .seconds(20)))
            let pid = try #require(Self.pid(in: started))
            let booting = try #require(ProcessPriority.nice(of: pid))
            #expect(booting == min(19, own + 10), "booting worker \(pid): nice \(booting), baton \(own)")
            // In baton's session (the kernel weighs sessions against each other before
            // threads), so its nicer threads yield to the serving workers'.
            #expect(getsid(pid) == getsid(baton.process.pid), "booting worker \(pid): session \(getsid(pid))")
            #expect(baton.process.waitForLine(containing: "all 2 workers ready", timeout: .seconds(30)) != nil)
            for worker in try baton.status().workers {
                let nices = Self.treeNice(worker.pid)
                #expect(!nices.isEmpty && nices.allSatisfy { $0 == own }, "worker \(worker.pid): \(nices), baton \(own)")
            }
            // A deploy's new workers get the same: nicer while booting, back once ready.
            let load = LoadClient(port: baton.port, connections: 4, maxDuration: .seconds(120))
            #expect(load.waitForProgress(100))
            let result = try baton.cli(["deploy", "--release", baton.makeRelease("r2")])
            let report = load.stop()
            #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
            #expect(report.failed == 0, "\(report)")
            for worker in try baton.status().workers {
                #expect(worker.release.hasSuffix("/r2"))
                let nices = Self.treeNice(worker.pid)
                #expect(!nices.isEmpty && nices.allSatisfy { $0 == own }, "worker \(worker.pid): \(nices), baton \(own)")
            }
        }

        /// A pid-1 audit: root without CAP_SYS_NICE (a default container) was taken for able to
        /// give the priority back, and both serving workers stayed at nice 10 for good.
        @Test("root without CAP_SYS_NICE: boot_nice is ignored, said once, and workers serve at baton's priority")
        func rootWithoutSysNice() throws {
            let baton = try BatonHarness(
                workers: 2, sections: Self.sections(10), tag: "bnr",
                wrapper: ["/usr/bin/setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "--"])
            defer { baton.stop() }
            let own = try #require(ProcessPriority.nice(of: baton.process.pid))
            #expect(baton.process.waitForLine(containing: "boot_nice = 10 ignored", timeout: .seconds(5)) != nil)
            for worker in try baton.status().workers {
                let nices = Self.treeNice(worker.pid)
                #expect(!nices.isEmpty && nices.allSatisfy { $0 == own }, "worker \(worker.pid): \(nices), baton \(own)")
            }
        }

        @Test("boot_nice outside 0...19 is a config error naming the key (exit 2)", arguments: ["20", "-1", "\"10\""])
        func outOfRange(value: String) throws {
            let directory = TestPaths.temporaryDirectory("bnc")
            defer { TestPaths.remove(directory) }
            let path = directory + "/baton.toml"
            TestPaths.write(path, "[app]\nname = \"x\"\ncommand = [\"/bin/true\"]\ndirectory = \"/\"\nworkers = 1\n[readiness]\nboot_nice = \(value)\n")
            let result = try TestProcess.run([TestPaths.executable("baton"), "check-config", path], timeout: .seconds(30))
            #expect(result.code == 2)
            #expect(result.stderr.contains("readiness.boot_nice"), "\(result.stderr)")
        }

        /// The pid of a "worker started" log line.
        static func pid(in line: String) -> pid_t? {
            guard let range = line.range(of: "pid=") else { return nil }
            return pid_t(line[range.upperBound...].prefix { $0.isNumber })
        }
    }
}
