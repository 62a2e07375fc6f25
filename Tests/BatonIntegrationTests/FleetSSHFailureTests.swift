import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension FleetIntegration {
    /// The fleet's failure cases over real ssh; each ends with a known release on
    /// every host and a non-zero exit naming the host and the reason.
    @Suite("fleet over real ssh: failures", FleetSSHFixture.needsRoot)
    struct FleetSSHFailureTests {
        static func release(_ id: String) -> String { FleetSSHFixture.release(id) }
        static let start = release("r1")

        @Test("a host short of memory stops the rollout before any host changes, with that host's figures (playbook and baton-deploy)")
        func preflightStopsEveryHost() throws {
            let f = try FleetSSHFixture(memoryBudget: [1: "40MiB"])
            defer { f.teardown() }
            let pids = try f.pids()
            let run = try f.playbook(f.inventory("short"), ["-e", "release_id=v2", "-e", "deploy_batch=2", "-e", "baton_need=64MiB"])
            #expect(run.code == 2, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            let stopped = "preflight failed on h2 (exit 1): does not fit in memory; nothing was changed on any host"
            #expect(run.stdout.contains(stopped), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("budget: 40.0 MiB (configured)"), "h2's figures: \(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("does not fit: need"))
            #expect(!run.stdout.contains("PLAY [Deploy host by host]"), "no host was deployed")
            #expect(try f.releases() == Array(repeating: Self.start, count: 3))
            #expect(try f.pids() == pids)
            for host in f.hosts { #expect(access(host.directory + "/releases/v2", F_OK) != 0, "nothing copied to \(host.name)") }

            // baton-deploy checks every host before it copies anything to the first.
            let script = try f.batonDeploy([0, 1, 2], ["--release-id", "v2", "--need", "64MiB", f.good])
            let h2 = "root@" + f.hosts[1].address
            #expect(script.code == 1, "\(script.stdout)\n\(script.stderr)")
            #expect(script.stderr.contains("budget: 40.0 MiB (configured)"), "\(script.stderr)")
            #expect(script.stderr.contains("baton-deploy: \(h2): preflight failed (exit 1)"), "\(script.stderr)")
            #expect(script.stderr.contains("baton-deploy: stopped before any change: preflight failed on: \(h2)"), "\(script.stderr)")
            #expect(!script.stdout.contains(": ship "), "\(script.stdout)")
            #expect(try f.releases() == Array(repeating: Self.start, count: 3))
            #expect(try f.pids() == pids)
            for host in f.hosts { #expect(access(host.directory + "/releases/v2", F_OK) != 0, "nothing copied to \(host.name)") }
        }

        @Test("h3's release breaks in the second batch: the run stops (max_fail_percentage 0); h1, h2 stay on it, or go back with rollback_on_failure")
        func brokenHostMidRollout() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            let inventory = f.inventory("bad-h3", hostVars: ["h3": "release_src=\(f.bad)"])
            let reportPath = f.fleet.directory + "/report.json"
            let loads = f.load()
            for load in loads { #expect(load.waitForProgress(50)) }
            let run = try f.playbook(inventory, ["-e", "release_id=v2", "-e", "deploy_batch=2", "-e", "baton_report_file=\(reportPath)"])
            let reports = FleetSSHFixture.finish(loads)
            #expect(run.code == 2, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            #expect(try f.releases() == [Self.release("v2"), Self.release("v2"), Self.start])
            for (host, report) in zip(f.hosts, reports) { #expect(report.failed == 0, "\(host.name): \(report)") }
            let verdict = "deploy of v2 failed on h3 (exit 1): deploy of \(Self.release("v2")) failed: exited during start"
            #expect(run.stdout.contains(verdict), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("left on the new release: h1, h2"), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("boot failed: simulated"), "baton's output from h3")
            #expect(run.stdout.contains("h1  \(Self.release("v2"))  2/2  deployed"), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("h3  \(Self.start)  2/2  FAILED (baton rolled it back)"))
            let report = try JSONDecoder().decode(FleetReport.self, from: Data((ProcFS.read(reportPath) ?? "").utf8))
            #expect(report.failedHost == "h3" && !report.rolledBack)
            #expect(report.hosts.map(\.release) == [Self.release("v2"), Self.release("v2"), Self.start])

            // rollback_on_failure, batches as a percentage ([1, "100%"]: h1, then h2 and h3): v3
            // reaches h1 and h2, breaks on h3; h1 and h2 go back to v2.
            let rolled = try f.playbook(
                inventory, ["-e", "release_id=v3", "-e", "deploy_batch=100%", "-e", "rollback_on_failure=true", "-e", "baton_report_file=\(reportPath)"])
            #expect(rolled.code == 2, "\(rolled.stdout.suffix(4000))")
            #expect(rolled.stdout.contains("deploy of v3 failed on h3 (exit 1)"), "\(rolled.stdout.suffix(4000))")
            #expect(rolled.stdout.contains("rolled back: h1, h2"), "\(rolled.stdout.suffix(4000))")
            #expect(FleetSSHTests.batches(rolled.stdout).count == 2, "[h1], [h2, h3]")
            #expect(try f.releases() == [Self.release("v2"), Self.release("v2"), Self.start])
            let after = try JSONDecoder().decode(FleetReport.self, from: Data((ProcFS.read(reportPath) ?? "").utf8))
            #expect(after.rolledBack && after.hosts.map(\.outcome) == ["deployed, rolled back", "deployed, rolled back", "FAILED (baton rolled it back)"])
        }

        @Test("h3 drops off the network (link down) after the preflight, as its batch starts: the run stops naming it; h1, h2 on the release, h3 not changed")
        func hostDropsOffMidRollout() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            // baton-deploy for h3 takes h3's link down just before it runs (not for the preflight).
            let wrapper = f.fleet.directory + "/baton-deploy-h3"
            TestPaths.write(
                wrapper,
                """
                #!/bin/sh
                case " $* " in *" --preflight-only "*) ;; *) /usr/sbin/ip -n \(f.hosts[2].namespace) link set eth0 down ;; esac
                exec \(deployFolder)/baton-deploy "$@"

                """, mode: 0o755)
            let reportPath = f.fleet.directory + "/report.json"
            let run = try f.playbook(
                f.inventory("drop-h3", hostVars: ["h3": "baton_deploy_script=\(wrapper)"]),
                ["-e", "release_id=v2", "-e", "deploy_batch=2", "-e", "baton_report_file=\(reportPath)"])
            #expect(run.code == 2, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            let h3 = "root@" + f.hosts[2].address
            let verdict = "deploy of v2 failed on h3 (exit 3): \(h3): unreachable over ssh (ssh exit 255)"
            #expect(run.stdout.contains(verdict), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("; left on the new release: h1, h2\""), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("h3  unreachable over ssh  0/0  FAILED (unreachable over ssh, not changed)"), "\(run.stdout.suffix(4000))")
            #expect(try f.releases() == [Self.release("v2"), Self.release("v2"), Self.start])
            #expect(access(f.hosts[2].directory + "/releases/v2", F_OK) != 0, "nothing copied to h3")
            let report = try JSONDecoder().decode(FleetReport.self, from: Data((ProcFS.read(reportPath) ?? "").utf8))
            #expect(report.failedHost == "h3" && report.hosts.map(\.release) == [Self.release("v2"), Self.release("v2"), "unreachable over ssh"])
            // Back on the network, a re-run finishes h3 and skips h1 and h2.
            try f.fleet.setLink(2, up: true)
            let rerun = try f.playbook(f.inventory("back"), ["-e", "release_id=v2", "-e", "deploy_batch=2"])
            #expect(rerun.code == 0, "\(rerun.stdout.suffix(4000))")
            #expect(rerun.stdout.contains("\"msg\": \"h1 is already on \(Self.release("v2")): skipped\""))
            #expect(rerun.stdout.contains("changed: [h3 -> localhost]"))
            #expect(try f.releases() == Array(repeating: Self.release("v2"), count: 3))
        }

        @Test("baton-deploy: h2's link goes down after its rsync, at its deploy step: exit 3 naming it; h1 on the release, h2 and h3 not")
        func scriptLosesHostAtDeploy() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            // ssh as baton-deploy calls it, except that h2's `baton deploy` finds h2's link down.
            let ssh = f.fleet.directory + "/ssh-drops-h2"
            TestPaths.write(
                ssh,
                """
                #!/bin/sh
                case "$*" in *"\(f.hosts[1].address) "*" deploy "*) /usr/sbin/ip -n \(f.hosts[1].namespace) link set eth0 down ;; esac
                exec \(f.fleet.sshCommand) "$@"

                """, mode: 0o755)
            let run = try TestProcess.run(
                [
                    deployFolder + "/baton-deploy", "--ssh", ssh, "--hosts", f.hosts.map { "root@" + $0.address }.joined(separator: ","),
                    "--baton", f.binaries.executable("baton"), "--socket", FleetHosts.hostRoot + "/control.sock",
                    "--releases-dir", FleetHosts.hostRoot + "/releases", "--release-id", "v2", f.good,
                ], timeout: .seconds(180))
            let h2 = "root@" + f.hosts[1].address
            #expect(run.code == 3, "\(run.stdout)\n\(run.stderr)")
            #expect(run.stderr.contains("baton-deploy: \(h2): unreachable over ssh at the deploy step (ssh exit 255)"), "\(run.stderr)")
            #expect(run.stderr.contains("baton-deploy: stopped. deployed: root@\(f.hosts[0].address); failed: \(h2)"), "\(run.stderr)")
            #expect(try f.releases() == [Self.release("v2"), Self.start, Self.start])
            #expect(access(f.hosts[1].directory + "/releases/v2/run", X_OK) == 0, "h2 got the copy before its link went down")
            #expect(access(f.hosts[2].directory + "/releases/v2", F_OK) != 0, "h3 was not touched")
        }

        /// A fleet audit, three ways `rollback_on_failure=true` went wrong. (1) A host skipped as
        /// already on the release was rolled back off it. (2) One rollback that failed (its
        /// host unreachable) ended the rescue: no table, no JSON report, no final line. (3) ssh
        /// dropped while `baton deploy` ran: baton went on and deployed the host, which the run
        /// reported "not changed" and left on the new release while it rolled the others back.
        @Test(
            "rollback_on_failure: a host already on the release stays; a failed rollback is a row; a host ssh lost at its deploy step is followed and rolled back"
        )
        func rollbackOnFailureEdges() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            let h1 = try f.batonDeploy([0], ["--release-id", "v3", f.good])
            #expect(h1.code == 0, "\(h1.stdout)\n\(h1.stderr)")
            // h2: its link goes down once it is deployed (its rollback cannot reach it).
            let h2 = f.fleet.directory + "/baton-deploy-h2"
            TestPaths.write(
                h2,
                """
                #!/bin/sh
                \(deployFolder)/baton-deploy "$@"
                code=$?
                case " $* " in *" --preflight-only "*) ;; *) [ "$code" -eq 0 ] && /usr/sbin/ip -n \(f.hosts[1].namespace) link set eth0 down ;; esac
                exit $code

                """, mode: 0o755)
            // h3: the ssh running `baton deploy` is killed after 1 s, as a dropped connection.
            let bin = Self.droppingSSH(in: f.fleet.directory + "/h3-bin", matching: #"*" deploy "*--release*"#)
            let h3 = f.fleet.directory + "/baton-deploy-h3"
            TestPaths.write(h3, "#!/bin/sh\nPATH=\(bin):$PATH exec \(deployFolder)/baton-deploy \"$@\"\n", mode: 0o755)
            let reportPath = f.fleet.directory + "/report.json"
            let run = try f.playbook(
                f.inventory("edges", hostVars: ["h2": "baton_deploy_script=\(h2)", "h3": "baton_deploy_script=\(h3)"]),
                ["-e", "release_id=v3", "-e", "deploy_batch=2", "-e", "rollback_on_failure=true", "-e", "baton_report_file=\(reportPath)"])
            #expect(run.code == 2, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            #expect(run.stdout.contains("h1  \(Self.release("v3"))  2/2  already on the release (skipped)"), "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("h2  unreachable over ssh  0/0  deployed, rollback FAILED"), "\(run.stdout.suffix(4000))")
            #expect(
                run.stdout.contains("h3  \(Self.start)  2/2  FAILED (ssh lost at its deploy step; baton deployed it), rolled back"),
                "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("; rolled back: h3; rollback FAILED on: h2"), "\(run.stdout.suffix(4000))")
            let report = try JSONDecoder().decode(FleetReport.self, from: Data((ProcFS.read(reportPath) ?? "").utf8))
            #expect(report.failedHost == "h3" && report.rolledBack)
            try f.fleet.setLink(1, up: true)
            #expect(try f.releases() == [Self.release("v3"), Self.release("v3"), Self.start])
        }

        /// A folder with an `ssh` that kills the connection of a command matching `pattern` (a
        /// `case` pattern on its arguments) after 1 s and exits 255, as a dropped connection.
        static func droppingSSH(in bin: String, matching pattern: String) -> String {
            _ = mkdir(bin, 0o755)
            TestPaths.write(
                bin + "/ssh",
                """
                #!/bin/sh
                case "$*" in
                \(pattern)) /usr/bin/ssh "$@" & pid=$!; sleep 1; kill -9 $pid 2>/dev/null; wait $pid; exit 255 ;;
                esac
                exec /usr/bin/ssh "$@"

                """, mode: 0o755)
            return bin
        }

        /// A fleet audit: h1 was lost while baton-deploy followed (`--attach`) an earlier run's deploy
        /// there; the table said `FAILED (unreachable over ssh, not changed)` and rollback_on_failure
        /// left h1 on the new release, which baton went on to deploy.
        @Test("rollback_on_failure: a host lost while baton-deploy follows an earlier run's deploy there is followed to its end and rolled back")
        func hostLostWhileFollowing() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            // h1: the ssh running `baton deploy --attach` is killed after 1 s, as a dropped connection.
            let bin = Self.droppingSSH(in: f.fleet.directory + "/h1-bin", matching: #"*" deploy "*--attach*"#)
            // An earlier run's deploy of c6 (cancelled: nobody follows it), still booting (8 s), when
            // baton-deploy comes to h1.
            writeRunScript(f.hosts[0].directory + "/releases/c6", flags: ["--boot-delay", "8"], worker: f.binaries.executable("baton-demo-worker"))
            let cli = "'\(f.hosts[0].batonExecutable)'"
            let socket = "--socket '\(f.hosts[0].controlSocket)'"
            let h1 = f.fleet.directory + "/baton-deploy-h1"
            TestPaths.write(
                h1,
                """
                #!/bin/sh
                case " $* " in
                *" --preflight-only "*) ;;
                *)
                    \(cli) deploy \(socket) --release '\(Self.release("c6"))' >/dev/null 2>&1 &
                    for i in $(seq 50); do
                        \(cli) status \(socket) --json | grep -q '"kind" : "deploy"' && break
                        sleep 0.2
                    done
                    ;;
                esac
                PATH=\(bin):$PATH exec \(deployFolder)/baton-deploy "$@"

                """, mode: 0o755)
            let run = try f.playbook(
                f.inventory("follow", hostVars: ["h1": "baton_deploy_script=\(h1)"]), ["-e", "release_id=c6", "-e", "rollback_on_failure=true"])
            #expect(run.code == 2, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            #expect(run.stdout.contains("while following the deploy of \(Self.release("c6"))"), "\(run.stdout.suffix(4000))")
            #expect(
                run.stdout.contains("h1  \(Self.start)  2/2  FAILED (ssh lost at its deploy step; baton deployed it), rolled back"),
                "\(run.stdout.suffix(4000))")
            #expect(run.stdout.contains("; rolled back: h1\""), "\(run.stdout.suffix(4000))")
            // Once nothing runs on h1 (the old code left the deploy of c6 to end on its own, there).
            var idle = false
            for _ in 0..<150 where !idle {
                idle = (try? f.hosts[0].status()).map { $0.operation == nil } ?? false
                if !idle { usleep(200_000) }
            }
            #expect(idle, "h1's operations ended")
            #expect(try f.releases() == Array(repeating: Self.start, count: 3))
        }

        @Test("an unreachable host (its sshd stopped): nothing changes on any host; the exit names it (playbook and baton-deploy)")
        func unreachableHost() throws {
            // A namespace a crashed run of this suite left (its runner pid is gone) is deleted at start.
            let gone = try TestProcess(["/bin/true"])
            gone.wait(timeout: .seconds(10))
            let stale = "baton-t-\(gone.pid)-h1"
            #expect(try TestProcess.run(["ip", "netns", "add", stale]).code == 0)
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            #expect(try !TestProcess.run(["ip", "netns", "list"]).stdout.contains(stale), "the stale namespace was deleted")
            let pids = try f.pids()
            f.fleet.stopSSH(1)
            let run = try f.playbook(f.inventory("down"), ["-e", "release_id=v2"])
            #expect(run.code == 2, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            #expect(run.stdout.contains("preflight failed on h2 (exit 3): unreachable over ssh"), "\(run.stdout.suffix(4000))")
            #expect(!run.stdout.contains("PLAY [Deploy host by host]"))
            #expect(try f.releases() == Array(repeating: Self.start, count: 3))
            #expect(try f.pids() == pids)

            let script = try f.batonDeploy([0, 1, 2], ["--release-id", "v2", f.good])
            let h2 = "root@" + f.hosts[1].address
            #expect(script.code == 3, "\(script.stdout)\n\(script.stderr)")
            #expect(script.stderr.contains("baton-deploy: \(h2): unreachable over ssh"), "\(script.stderr)")
            #expect(script.stderr.contains("stopped before any change: preflight failed on: \(h2)"), "\(script.stderr)")
            #expect(try f.releases() == Array(repeating: Self.start, count: 3))
            #expect(try f.pids() == pids)
            for host in f.hosts { #expect(access(host.directory + "/releases/v2", F_OK) != 0, "nothing copied to \(host.name)") }

            // The teardown leaves no namespace, veth, sshd or baton behind.
            let made = f.hosts.map { ($0.namespace, $0.veth, $0.sshd.pid, $0.baton.pid) }
            f.teardown()
            let namespaces = try TestProcess.run(["ip", "netns", "list"]).stdout
            let links = try TestProcess.run(["ip", "-o", "link", "show"]).stdout
            for (namespace, veth, sshd, baton) in made {
                #expect(!namespaces.contains(namespace) && !links.contains(veth + "@"))
                #expect(kill(sshd, 0) != 0 && kill(baton, 0) != 0, "sshd and baton were stopped and reaped")
            }
        }
    }
}
