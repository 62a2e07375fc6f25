import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension MemoryIntegration {
    /// The memory reservation of `preflight --roll-ahead` under real workers that leak, and
    /// `preflight --pid` on a process tree baton does not run.
    @Suite("memory reservation")
    struct ReservationTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }
        static let mib: Int64 = 1 << 20

        /// Workers that leak 1 MiB a request under a configured budget (the budget limit is the
        /// one that binds: `reserve = 0B` keeps the host's MemAvailable out of the way).
        static func sections(margin: String) -> String {
            """
            [listen]
            addresses = ["127.0.0.1:0"]
            [readiness]
            timeout = "20s"
            [memory]
            budget = "150MiB"
            reserve = "0B"
            check_interval = "1h"
            reservation_margin = "\(margin)"
            [deploy]
            worker_footprint = "1MiB"
            """
        }

        func preflight(_ baton: BatonHarness, _ args: [String]) throws -> (CommandResult, PreflightReport?) {
            let result = try baton.cli(["preflight", "--json"] + args)
            let last = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
            let reply = try? JSONDecoder().decode(ControlReply.self, from: Data(last.utf8))
            return (result, reply?.preflight)
        }

        func size(_ bytes: Int64) -> String { "\(max(0, bytes) >> 20)MiB" }

        /// Found by an operator audit: after `baton upgrade` the reservation was gone without a
        /// line, and the settled footprint too (the next deploy replaced one slot at a time).
        @Test("baton upgrade carries the held reservation and the settled worker footprint over")
        func upgradeKeepsTheReservationAndTheFootprint() throws {
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--hold", "8"],
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [memory]
                    budget = "1GiB"
                    reserve = "0B"
                    check_interval = "1h"
                    """, tag: "rsvupg")
            defer { baton.stop() }
            let settled = baton.process.waitForLine(timeout: .seconds(20)) { _ in
                baton.process.stderrLines.filter { $0.contains("footprint settled") }.count >= 2
            }
            #expect(settled != nil)
            let (held, before) = try preflight(baton, ["--need", "50MiB", "--roll-ahead", "--hold", "10m"])
            #expect(held.code == 0 && before?.reservation != nil && before?.footprintBytes != nil, "\(held.stdout)\n\(held.stderr)")
            let upgraded = try baton.cli(["upgrade"], timeout: .seconds(90))
            #expect(upgraded.code == 0, "\(upgraded.stderr)")
            let after = try baton.status()
            #expect(after.reservation?.bytes == before?.reservation?.bytes, "\(String(describing: after.reservation))")
            let (_, report) = try preflight(baton, ["--need", "1MiB"])
            #expect(report?.footprintBytes == before?.footprintBytes, "\(String(describing: report))")
        }

        // The defect: a verdict that fit by less than any margin rolled nothing and promised the
        // memory, which the workers then took back.
        @Test("--roll-ahead restarts grown workers until the need fits with the margin to spare, then holds it")
        func rollAheadKeepsTheMargin() throws {
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--hold", "10", "--grow-per-request", "1M"], sections: Self.sections(margin: "30MiB"),
                tag: "rsv")
            defer { baton.stop() }
            for _ in 0..<60 { #expect(HTTP.get(port: baton.port, path: "/")?.status == 200) }
            let (_, grown) = try preflight(baton, [])
            let have = try #require(grown).haveBytes
            // Fits by 10 MiB: under the 30 MiB margin.
            let need = size(have - 10 * Self.mib)
            let (plain, fits) = try preflight(baton, ["--need", need])
            #expect(plain.code == 0 && fits?.fits == true, "\(plain.stdout)")

            let (rolled, report) = try preflight(baton, ["--need", need, "--roll-ahead", "--hold", "1s"])
            #expect(rolled.code == 0, "\(rolled.stdout)\n\(rolled.stderr)")
            let r = try #require(report)
            #expect(!(r.rolledAhead ?? []).isEmpty, "\(rolled.stdout)")
            let reservation = try #require(r.reservation)
            #expect(reservation.bytes == UInt64(need.dropLast(3))! << 20)
            #expect(reservation.marginBytes == 30 << 20)
            #expect(r.haveBytes >= Int64(reservation.bytes + reservation.marginBytes))
            // The hold passes: the daemon lets go by itself.
            let released = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("reservation:") && $0.contains("released (the hold of 1s passed)") }
            #expect(released != nil, "\(baton.process.stderrLines.suffix(10))")
            #expect(try baton.status().reservation == nil)
        }

        @Test("the held reservation rolls the grown worker when a leak eats into it; that roll does not surge into reserved memory")
        func reservationRollsWhenALeakEatsIntoIt() throws {
            let baton = try BatonHarness(
                workers: 3, command: [Self.worker, "--hold", "10", "--grow-per-request", "1M"], sections: Self.sections(margin: "8MiB"),
                tag: "rsl")
            defer { baton.stop() }
            let (_, fresh) = try preflight(baton, [])
            let have = try #require(fresh).haveBytes
            // 20 MiB over need + margin: it fits without a restart and is held.
            let need = size(have - 28 * Self.mib)
            let (held, report) = try preflight(baton, ["--need", need, "--roll-ahead", "--hold", "10m"])
            #expect(held.code == 0, "\(held.stdout)\n\(held.stderr)")
            #expect(report?.reservation != nil && report?.rolledAhead == nil, "\(held.stdout)")
            #expect(try baton.cli(["status"]).stdout.contains("reservation: \(need.dropLast(3)).0 MiB held (+ 8.0 MiB margin)"))

            // 45 MiB of leaks: more than the 20 MiB to spare.
            for _ in 0..<45 { #expect(HTTP.get(port: baton.port, path: "/")?.status == 200) }
            let roll = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("reservation: headroom") && $0.contains("rolling slot") }
            #expect(roll != nil, "\(baton.process.stderrLines.suffix(10))")
            let done = baton.process.waitForLine(timeout: .seconds(60)) { $0.contains("reservation: slot") && $0.contains("rolled in") }
            #expect(done != nil, "\(baton.process.stderrLines.suffix(10))")
            // A 1 MiB surge would fit the budget, not the budget minus the reservation.
            let started = baton.process.stderrLines.first { $0.contains("roll-ahead started") }
            #expect(started?.contains("strategy=replace") == true, "\(started ?? "no roll-ahead started")")
            let status = try baton.status()
            #expect((status.reservation?.rolls ?? 0) >= 1)
            #expect(status.workers.contains { $0.lastRestartReason == "roll-ahead" })

            let release = try baton.cli(["preflight", "--release-reservation"])
            #expect(release.code == 0 && release.stdout.contains("released after"), "\(release.stdout)")
            #expect(try baton.status().reservation == nil)
            #expect(try baton.cli(["preflight", "--release-reservation"]).stdout.contains("no reservation held"))
        }

        @Test("the restart policy measures its threshold against the budget minus the reservation; metrics show the reservation")
        func policySeesTheBudgetMinusTheReservation() throws {
            // 2 workers of about 45 MiB PSS under 55 % of 200 MiB (110 MiB): the policy is quiet.
            // They grow 256 KiB a request: the policy replaces only a worker that grew, and only
            // while their growth could bring the total under the line.
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--hold", "20", "--grow-per-request", "256K"],
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    timeout = "20s"
                    [memory]
                    budget = "200MiB"
                    reserve = "0B"
                    threshold = "55%"
                    check_interval = "300ms"
                    smaps_every = 1
                    min_worker_age = "1s"
                    reservation_margin = "8MiB"
                    [metrics]
                    address = "127.0.0.1:0"
                    """, tag: "rsp")
            defer { baton.stop() }
            let (held, report) = try preflight(baton, ["--need", "100MiB", "--roll-ahead", "--hold", "10m"])
            #expect(held.code == 0 && report?.reservation != nil, "\(held.stdout)\n\(held.stderr)")
            // 200 − (100 + 8) = 92 MiB left to the workers: 55 % of it (50.6 MiB) is over their
            // fresh PSS and under it once they grew 15 MiB. Growth counts from each worker's
            // settled footprint: requests after both settled.
            let settled = baton.process.waitForLine(timeout: .seconds(20)) { _ in
                baton.process.stderrLines.filter { $0.contains("footprint settled") }.count >= 2
            }
            #expect(settled != nil)
            for _ in 0..<60 { _ = HTTP.get(port: baton.port, path: "/") }
            let fired = baton.process.waitForLine(timeout: .seconds(30)) { $0.contains("restart policy:") }
            #expect(fired?.contains("> 55% of the 92.0 MiB budget (configured)") == true, "\(fired ?? "the policy did not fire")")
            // The reservation in the metrics while it is held.
            let port = try #require(baton.metricsPort())
            let metrics = try #require(HTTP.get(port: port, path: "/metrics")).body
            #expect(metrics.contains("baton_reservation_bytes \(100 << 20)"), "\(metrics)")
            #expect(metrics.contains("# TYPE baton_reservation_remaining_seconds gauge"))
            #expect(metrics.contains("baton_reservation_rolls "))
        }

        @Test("bad reservation arguments: one line, exit 2, the daemon untouched")
        func badArguments() throws {
            let baton = try BatonHarness(workers: 1, command: [Self.worker], sections: Self.sections(margin: "8MiB"), tag: "rsb")
            defer { baton.stop() }
            for args in [["--need", "1MiB", "--roll-ahead", "--hold", "3h"], ["--need", "1MiB", "--hold", "1m"], ["--pid", "1", "--unit", "x"]] {
                let result = try baton.cli(["preflight"] + args)
                #expect(result.code == 2, "\(args): \(result.stderr)")
                #expect(result.stderr.split(separator: "\n").count <= 2, "\(result.stderr)")
            }
            #expect(try baton.status().workers.count == 1)
        }

        @Test("preflight --pid measures a process tree baton does not run, without a daemon")
        func preflightForeignProcessTree() throws {
            let shell = try TestProcess([
                "/bin/sh", "-c", "\"$0\" --listen 127.0.0.1:0 --hold 20 & \"$0\" --listen 127.0.0.1:0 --hold 30 & wait", Self.worker,
            ])
            defer {
                // The children first: the shell's `wait` reaps them, then it exits.
                for child in ProcFS.children(of: shell.pid) { kill(child, SIGTERM) }
                if shell.wait(timeout: .seconds(30)) == nil { _ = shell.stop() }
            }
            // Both children allocated and touched their memory (bounded wait).
            var pss: UInt64 = 0
            for _ in 0..<200 where pss < 50 << 20 {
                pss = ProcFS.treeMemory(of: shell.pid, detailed: true)?.pss ?? 0
                if pss < 50 << 20 { pause(0.05) }
            }
            #expect(pss >= 50 << 20)
            let baton = TestPaths.executable("baton")
            let fits = try TestProcess.run([baton, "preflight", "--pid", String(shell.pid), "--need", "1MiB", "--json"])
            #expect(fits.code == 0, "\(fits.stdout)\(fits.stderr)")
            let reply = try JSONDecoder().decode(ControlReply.self, from: Data(fits.stdout.utf8))
            let report = try #require(reply.preflight)
            #expect(report.fits && report.needBytes == 1 << 20)
            #expect(report.workersPSSBytes >= 50 << 20)
            #expect(reply.details?.first?.hasPrefix("process tree of pid \(shell.pid): 3 processes") == true, "\(reply.details ?? [])")
            let short = try TestProcess.run([baton, "preflight", "--pid", String(shell.pid), "--need", "1TiB"])
            #expect(short.code == 1)
            #expect(short.stderr.contains("does not fit: need 1.0 TiB"), "\(short.stderr)")
            let none = try TestProcess.run([baton, "preflight", "--pid", "2147483647", "--need", "1MiB"])
            #expect(none.code == 2 && none.stderr.contains("no such process"), "\(none.stderr)")
            // As a user who may not read these processes' smaps_rollup (a pid-1 audit: PSS 0 B,
            // and "fits" on nothing measured): their RSS counts, and it is said.
            // (The build's binary: the suite's private copy is in a folder only root may enter.)
            let other = try TestProcess.run(
                [
                    "/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", TestPaths.buildDirectory + "/baton", "preflight", "--pid",
                    String(shell.pid), "--need", "1MiB", "--json",
                ])
            let measured = try #require(try JSONDecoder().decode(ControlReply.self, from: Data(other.stdout.utf8)).preflight, "\(other.stdout)\(other.stderr)")
            #expect(measured.workersPSSBytes >= 50 << 20, "\(other.stdout)")
            #expect(other.stdout.contains("PSS and USS of 3 of them unreadable"), "\(other.stdout)")
        }
    }
}
