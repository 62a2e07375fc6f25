import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

/// One row of the playbook's release table (`baton_report_file`).
struct FleetRow: Decodable, Equatable {
    var host: String
    var release: String
    var ready: String
    var outcome: String
}

/// The playbook's report after a failed run.
struct FleetReport: Decodable {
    var failedHost: String
    var rolledBack: Bool
    var hosts: [FleetRow]

    enum CodingKeys: String, CodingKey {
        case hosts
        case failedHost = "failed_host"
        case rolledBack = "rolled_back"
    }
}

extension Integration {
    /// deploy/ansible/deploy.yml with Ansible's local connection against two
    /// real baton instances on this machine, and the CI examples.
    @Suite("deploy/ansible and CI examples")
    struct FleetTests {
        /// Runs ansible-playbook quietly and bounded, writing nothing under ~.
        /// `directory`: where it is run from (a shell's `cd`, which sets PWD), else here.
        static func playbook(_ work: String, inventory: String, _ extra: [String], directory: String? = nil) throws -> CommandResult {
            let home = work + "/ansible-home"
            _ = mkdir(home, 0o700)
            let environment = TestPaths.cleanEnvironment(adding: [
                "ANSIBLE_HOME": home, "ANSIBLE_LOCAL_TEMP": home + "/tmp", "ANSIBLE_REMOTE_TEMP": home + "/remote-tmp",
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
                "ANSIBLE_GATHERING": "explicit", "LC_ALL": "C.UTF-8",
            ])
            let cd = directory.map { ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", $0] } ?? []
            return try TestProcess.run(
                cd + ["/usr/bin/timeout", "-k", "5", "150", "ansible-playbook", "-i", inventory, deployFolder + "/ansible/deploy.yml"] + extra,
                environment: environment, timeout: .seconds(170))
        }

        /// Which release each instance serves.
        static func releases(_ instances: [BatonHarness]) throws -> [String] { try instances.map { try $0.status().release } }

        @Test("the playbook deploys two instances in sequence; a broken second one stops the run with a table; the rollback variant returns both")
        func twoInstances() throws {
            let one = try scriptedBaton(workers: 2, tag: "fl1")
            defer { one.stop() }
            let two = try scriptedBaton(workers: 2, tag: "fl2")
            defer { two.stop() }
            let work = TestPaths.temporaryDirectory("fleet")
            defer { TestPaths.remove(work) }
            let good = work + "/good"
            let bad = work + "/bad"
            writeRunScript(good)
            writeRunScript(bad, flags: ["--fail-boot"])
            func inventory(second: String) -> String {
                let path = work + "/inventory-\(second == good ? "good" : "bad").ini"
                TestPaths.write(
                    path,
                    """
                    [baton]
                    inst1 baton_socket=\(one.controlSocket) baton_releases_dir=\(one.directory)/releases release_src=\(good)
                    inst2 baton_socket=\(two.controlSocket) baton_releases_dir=\(two.directory)/releases release_src=\(second)

                    [baton:vars]
                    ansible_connection=local
                    ansible_python_interpreter=/usr/bin/python3
                    baton_bin=\(TestPaths.executable("baton"))
                    """)
                return path
            }
            func released(_ id: String) -> [String] { [one.directory + "/releases/" + id, two.directory + "/releases/" + id] }

            // Both good: in sequence, one at a time.
            let first = try Self.playbook(work, inventory: inventory(second: good), ["-e", "release_id=v2"])
            #expect(first.code == 0, "\(first.stdout.suffix(3000))\n\(first.stderr.suffix(2000))")
            #expect(try Self.releases([one, two]) == released("v2"))
            let order = ["changed: [inst1", "changed: [inst2"].map { first.stdout.range(of: $0)?.lowerBound }
            #expect(order[0] != nil && order[1] != nil && order[0]! < order[1]!, "inst1 before inst2")

            // The second broken: the run stops; inst1 stays on v3, inst2 on v2; the table says so.
            let reportPath = work + "/report.json"
            let broken = try Self.playbook(work, inventory: inventory(second: bad), ["-e", "release_id=v3", "-e", "baton_report_file=\(reportPath)"])
            #expect(broken.code == 2, "\(broken.stdout.suffix(3000))")
            #expect(try Self.releases([one, two]) == [released("v3")[0], released("v2")[1]])
            #expect(broken.stdout.contains("inst1  \(released("v3")[0])  2/2  deployed"), "\(broken.stdout.suffix(3000))")
            #expect(broken.stdout.contains("inst2  \(released("v2")[1])  2/2  FAILED (baton rolled it back)"))
            #expect(broken.stdout.contains("deploy of v3 failed on inst2 (exit 1): deploy of \(released("v3")[1]) failed: exited during start"))
            #expect(broken.stdout.contains("; left on the new release: inst1\""))
            #expect(broken.stdout.contains("boot failed: simulated"), "baton's output from the failing host")
            let report = try JSONDecoder().decode(FleetReport.self, from: Data((ProcFS.read(reportPath) ?? "").utf8))
            #expect(report.failedHost == "inst2" && !report.rolledBack)
            #expect(report.hosts.map(\.release) == [released("v3")[0], released("v2")[1]])

            // Back to v2 on both, then the rollback variant: inst1 goes back to v2 too.
            #expect(try one.cli(["rollback"]).code == 0)
            #expect(try Self.releases([one, two]) == released("v2"))
            let rolled = try Self.playbook(
                work, inventory: inventory(second: bad), ["-e", "release_id=v4", "-e", "rollback_on_failure=true", "-e", "baton_report_file=\(reportPath)"])
            #expect(rolled.code == 2, "\(rolled.stdout.suffix(3000))")
            #expect(rolled.stdout.contains("deploy of v4 failed on inst2 (exit 1): "), "\(rolled.stdout.suffix(3000))")
            #expect(rolled.stdout.contains("; rolled back: inst1\""), "\(rolled.stdout.suffix(3000))")
            #expect(try Self.releases([one, two]) == released("v2"), "both on the old release")
            #expect(rolled.stdout.contains("inst1  \(released("v2")[0])  2/2  deployed, rolled back"))
            let afterRollback = try JSONDecoder().decode(FleetReport.self, from: Data((ProcFS.read(reportPath) ?? "").utf8))
            #expect(afterRollback.rolledBack && afterRollback.hosts.map(\.release) == released("v2"))
        }

        /// One instance on this machine (`ansible_connection=local`), its inventory in `work`.
        static func oneInstance(_ work: String, _ baton: BatonHarness, _ hostVars: String = "") -> String {
            let path = work + "/inventory-one.ini"
            TestPaths.write(
                path,
                """
                [baton]
                inst1 baton_socket=\(baton.controlSocket) baton_releases_dir=\(baton.directory)/releases \(hostVars)

                [baton:vars]
                ansible_connection=local
                ansible_python_interpreter=/usr/bin/python3
                baton_bin=\(TestPaths.executable("baton"))
                """)
            return path
        }

        /// A fleet audit: the README's own `-e release_src=build/release` failed (`RELEASE_DIR
        /// build/release is not a directory`): the delegated task runs in the playbook's folder.
        @Test("a relative release_src is the folder under the directory ansible-playbook is run from")
        func relativeReleaseSource() throws {
            let baton = try scriptedBaton(workers: 1, tag: "fl-rel")
            defer { baton.stop() }
            let work = TestPaths.temporaryDirectory("fleet-rel")
            defer { TestPaths.remove(work) }
            _ = mkdir(work + "/build", 0o755)
            writeRunScript(work + "/build/release")
            let run = try Self.playbook(
                work, inventory: Self.oneInstance(work, baton), ["-e", "release_src=build/release", "-e", "release_id=v2"], directory: work)
            #expect(run.code == 0, "\(run.stdout.suffix(3000))\n\(run.stderr.suffix(2000))")
            #expect(try baton.status().release == baton.directory + "/releases/v2")
        }

        /// A fleet audit: a host pattern or inventory that matched no host printed `skipping: no
        /// hosts matched` and exited 0 (baton-deploy with no host exits 2).
        @Test("no host matches: the run fails with one line")
        func noHostMatches() throws {
            let work = TestPaths.temporaryDirectory("fleet-none")
            defer { TestPaths.remove(work) }
            TestPaths.write(work + "/empty.ini", "[baton]\n")
            let empty = try Self.playbook(work, inventory: work + "/empty.ini", ["-e", "release_src=\(work)", "-e", "release_id=v2"])
            #expect(empty.code == 2, "\(empty.stdout.suffix(3000))\n\(empty.stderr.suffix(2000))")
            #expect(empty.stdout.contains("no host matches all in the inventory: nothing to deploy"), "\(empty.stdout.suffix(3000))")
            TestPaths.write(work + "/one.ini", "[baton]\ninst1 ansible_connection=local\n")
            let pattern = try Self.playbook(
                work, inventory: work + "/one.ini", ["-e", "release_src=\(work)", "-e", "release_id=v2", "-e", "baton_hosts=web"])
            #expect(pattern.code == 2, "\(pattern.stdout.suffix(3000))\n\(pattern.stderr.suffix(2000))")
            #expect(pattern.stdout.contains("no host matches web in the inventory: nothing to deploy"), "\(pattern.stdout.suffix(3000))")
        }

        /// A fleet audit: every failure but a lost host or a failed copy was reported `FAILED
        /// (baton rolled it back)`, a host another deploy held (`nothing was copied or changed`) too.
        @Test("a host where another deploy runs: the table says not changed, not rolled back")
        func busyHostIsNotChanged() throws {
            // The other deploy stays in progress for its stability window, past the run.
            let baton = try scriptedBaton(workers: 1, tag: "fl-busy", extra: "[deploy]\nstability_window = \"90s\"")
            defer { baton.stop() }
            let work = TestPaths.temporaryDirectory("fleet-busy")
            defer { TestPaths.remove(work) }
            let good = work + "/good"
            writeRunScript(good)
            let other = baton.directory + "/releases/other"
            writeRunScript(other)
            let earlier = try baton.startCLI(["deploy", "--release", other])
            #expect(baton.waitForStatus(timeout: .seconds(10)) { $0.operation?.release == other } != nil, "another deploy runs")
            let run = try Self.playbook(work, inventory: Self.oneInstance(work, baton), ["-e", "release_src=\(good)", "-e", "release_id=v2"])
            #expect(run.code == 2, "\(run.stdout.suffix(3000))\n\(run.stderr.suffix(2000))")
            #expect(run.stdout.contains("FAILED (not changed)"), "\(run.stdout.suffix(3000))")
            #expect(!run.stdout.contains("rolled it back"), "\(run.stdout.suffix(3000))")
            #expect(access(baton.directory + "/releases/v2", F_OK) != 0, "nothing copied")
            #expect(try baton.status().operation?.release == other, "the other deploy still runs")
            baton.stop()
            #expect(earlier.wait(timeout: .seconds(20)) != nil)
        }

        @Test("the CI examples are valid YAML and name only commands, options and baton verbs that exist; the playbook parses")
        func examples() throws {
            let baton = TestPaths.executable("baton")
            let check = try TestProcess.run([deployFolder + "/examples/check-examples", baton])
            #expect(check.code == 0, "\(check.stdout)\n\(check.stderr)")
            #expect(check.stdout.hasPrefix("examples ok: 2 files"), "\(check.stdout)")
            // The checker catches what it is for.
            let work = TestPaths.temporaryDirectory("ex")
            defer { TestPaths.remove(work) }
            TestPaths.write(
                work + "/bad.yml",
                """
                stages: [check]
                check:
                  script:
                    - deploy/baton-deploy --preflight-only --app shop --hosts a --memory-check 1G
                    - baton deploy --app shop --release /x --fast
                    - baton frobnicate --app shop
                """)
            TestPaths.write(work + "/broken.yml", "jobs:\n  a: [unclosed\n")
            let caught = try TestProcess.run([deployFolder + "/examples/check-examples", baton, work + "/bad.yml", work + "/broken.yml"])
            #expect(caught.code == 1)
            #expect(caught.stdout.contains("baton-deploy has no option --memory-check"), "\(caught.stdout)")
            #expect(caught.stdout.contains("baton deploy has no option --fast"))
            #expect(caught.stdout.contains("baton has no verb ['frobnicate']"))
            #expect(caught.stdout.contains("broken.yml: not valid YAML"))
            let syntax = try Self.playbook(work, inventory: "localhost,", ["--syntax-check"])
            #expect(syntax.code == 0, "\(syntax.stdout)\n\(syntax.stderr)")
        }
    }
}
