import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension FleetIntegration {
    /// deploy/ansible/deploy.yml and deploy/baton-deploy across three real hosts:
    /// network namespaces joined by veth pairs, each with its own OpenSSH server
    /// and baton, driven over real ssh with a key the test makes (`FleetHosts`).
    @Suite("fleet over real ssh (network namespaces, sshd, Ansible, baton-deploy)", FleetSSHFixture.needsRoot)
    struct FleetSSHTests {
        static func release(_ id: String) -> String { FleetSSHFixture.release(id) }

        /// The output of each batch of the deploy play (ansible prints the play header per batch).
        static func batches(_ stdout: String) -> [String] {
            Array(stdout.split(separator: "PLAY [Deploy host by host]", omittingEmptySubsequences: false).dropFirst().map(String.init))
        }

        @Test("the playbook: canary h1 alone, then h2 and h3 together (deploy_batch=2), 0 failed requests on every host; a re-run skips all")
        func canaryThenBatch() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            let loads = f.load()
            for load in loads { #expect(load.waitForProgress(50)) }
            let inventory = f.inventory("good")
            let run = try f.playbook(inventory, ["-e", "release_id=v2", "-e", "deploy_batch=2"])
            let reports = FleetSSHFixture.finish(loads)
            #expect(run.code == 0, "\(run.stdout.suffix(4000))\n\(run.stderr.suffix(2000))")
            #expect(try f.releases() == Array(repeating: Self.release("v2"), count: 3))
            for (host, report) in zip(f.hosts, reports) {
                print("\(host.name) under load: \(report)")
                #expect(report.failed == 0, "\(host.name): \(report)")
                #expect(report.releases.last == Self.release("v2"), "\(host.name): \(report)")
            }
            // serial [1, 2]: the canary's batch holds h1 only; the next one h2 and h3.
            let batches = Self.batches(run.stdout)
            #expect(batches.count == 2, "\(run.stdout.suffix(4000))")
            if batches.count == 2 {
                #expect(batches[0].contains("changed: [h1 -> localhost]") && !batches[0].contains("[h2") && !batches[0].contains("[h3"))
                #expect(batches[1].contains("changed: [h2 -> localhost]") && batches[1].contains("changed: [h3 -> localhost]"))
                #expect(!batches[1].contains("[h1"))
            }
            // Preflight of every host comes before the first change.
            #expect(FleetSSHFixture.ordered(run.stdout, "PLAY [Preflight every host", "PLAY [Deploy host by host]"))

            // A re-run pipeline: every host is already on v2; nothing is copied or restarted.
            let pids = try f.pids()
            let rerun = try f.playbook(inventory, ["-e", "release_id=v2", "-e", "deploy_batch=2"])
            #expect(rerun.code == 0, "\(rerun.stdout.suffix(4000))")
            for host in f.hosts {
                #expect(rerun.stdout.contains("\"msg\": \"\(host.name) is already on \(Self.release("v2")): skipped\""), "\(rerun.stdout.suffix(4000))")
            }
            #expect(!rerun.stdout.contains("changed: [h"), "\(rerun.stdout.suffix(4000))")
            #expect(try f.pids() == pids)
        }

        @Test("baton-deploy over real ssh to three hosts under load: 0 failed requests; a re-run skips every host")
        func scriptOverSSH() throws {
            let f = try FleetSSHFixture()
            defer { f.teardown() }
            let loads = f.load()
            for load in loads { #expect(load.waitForProgress(50)) }
            let run = try f.batonDeploy([0, 1, 2], ["--release-id", "v2", "--need", "16MiB", f.good])
            let reports = FleetSSHFixture.finish(loads)
            #expect(run.code == 0, "\(run.stdout)\n\(run.stderr)")
            #expect(try f.releases() == Array(repeating: Self.release("v2"), count: 3))
            for (host, report) in zip(f.hosts, reports) {
                print("\(host.name) under load (baton-deploy): \(report)")
                #expect(report.failed == 0, "\(host.name): \(report)")
            }
            let addresses = f.hosts.map { "root@" + $0.address }
            #expect(run.stdout.contains("baton-deploy: v2 deployed on: " + addresses.joined(separator: " ")), "\(run.stdout)")
            let pids = try f.pids()
            let rerun = try f.batonDeploy([0, 1, 2], ["--release-id", "v2", f.bad])
            #expect(rerun.code == 0, "\(rerun.stdout)\n\(rerun.stderr)")
            for address in addresses { #expect(rerun.stdout.contains("==> \(address): already on \(Self.release("v2")): skipped")) }
            #expect(try f.pids() == pids)
        }
    }
}
