import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

/// Three real hosts (network namespaces with their own sshd and baton, see
/// `FleetHosts`) and the release folders CI would have built, plus runners for
/// the playbook and baton-deploy over real ssh.
final class FleetSSHFixture {
    /// Network namespaces, veth pairs and an sshd per host need root (the CI runs
    /// `make test` as root); elsewhere the fleet suites are skipped, saying why.
    static let needsRoot = ConditionTrait.enabled(if: geteuid() == 0, "needs root: network namespaces, veth pairs, sshd")

    let fleet: FleetHosts
    /// The copies of baton and the demo worker every host runs (see `PrivateBinaries`:
    /// the fleet's processes would otherwise move the PSS of the memory suites'
    /// workers, which run beside this chain).
    let binaries: PrivateBinaries
    /// A release whose workers come up.
    let good: String
    /// A release whose workers fail readiness (`--fail-boot`).
    let bad: String

    /// `memoryBudget[i]`, when set, is host i's `[memory] budget` (reserve 0).
    init(memoryBudget: [Int: String] = [:]) throws {
        let binaries = try PrivateBinaries()
        self.binaries = binaries
        let worker = binaries.executable("baton-demo-worker")
        do {
            fleet = try FleetHosts(
                count: 3, workers: 2, command: ["./run"],
                sections: { i in
                    var text = """
                        [listen]
                        addresses = ["ADDRESS:\(FleetHosts.appPort)"]
                        [readiness]
                        mode = "notify"
                        timeout = "20s"
                        [stop]
                        timeout = "10s"
                        [deploy]
                        stability_window = "200ms"
                        """
                    if let budget = memoryBudget[i] { text += "\n[memory]\nbudget = \"\(budget)\"\nreserve = \"0B\"" }
                    return text
                },
                beforeStart: { folder in writeRunScript(folder + "/releases/r1", worker: worker) }, baton: binaries.executable("baton"))
        } catch {
            binaries.remove()
            throw error
        }
        good = fleet.directory + "/build-good"
        bad = fleet.directory + "/build-bad"
        writeRunScript(good, worker: worker)
        writeRunScript(bad, flags: ["--fail-boot"], worker: worker)
    }

    func teardown() {
        fleet.teardown()
        binaries.remove()
    }

    var hosts: [FleetHosts.Host] { fleet.hosts }

    /// A release folder as every host names it.
    static func release(_ id: String) -> String { FleetHosts.hostRoot + "/releases/" + id }

    /// Which release each host serves (asked from the test, not through ssh).
    func releases() throws -> [String] { try hosts.map { try $0.status().release } }

    /// The worker pids of each host.
    func pids() throws -> [[Int32]] { try hosts.map { try $0.status().workers.map(\.pid) } }

    /// An inventory: every host by its address, over real ssh with the test's key;
    /// `hostVars[name]` adds host variables (e.g. a broken `release_src`).
    func inventory(_ name: String, hostVars: [String: String] = [:]) -> String {
        let path = fleet.directory + "/inventory-\(name).ini"
        let lines = hosts.map { "\($0.name) ansible_host=\($0.address)" + (hostVars[$0.name].map { " " + $0 } ?? "") }
        let common = fleet.sshOptions.filter { $0 != "-i" && $0 != fleet.key }.joined(separator: " ")
        TestPaths.write(
            path,
            """
            [fleet]
            \(lines.joined(separator: "\n"))

            [fleet:vars]
            ansible_user=root
            ansible_python_interpreter=/usr/bin/python3
            ansible_ssh_private_key_file=\(fleet.key)
            ansible_ssh_common_args='\(common)'
            baton_bin=\(binaries.executable("baton"))
            baton_socket=\(FleetHosts.hostRoot)/control.sock
            baton_releases_dir=\(FleetHosts.hostRoot)/releases
            release_src=\(good)

            """)
        return path
    }

    /// Runs deploy/ansible/deploy.yml (bounded; nothing written under ~, no ssh
    /// master connection left behind). The playbook reaches the hosts only through
    /// baton-deploy's ssh, built from the inventory's ssh settings.
    func playbook(_ inventory: String, _ extra: [String]) throws -> CommandResult {
        let home = fleet.directory + "/ansible-home"
        _ = mkdir(home, 0o700)
        // Pipelining: a task on a host is one ssh connection (the module on its stdin)
        // instead of one to make a temp folder, one to copy the module and one to run it.
        let environment = TestPaths.cleanEnvironment(adding: [
            "ANSIBLE_HOME": home, "ANSIBLE_LOCAL_TEMP": home + "/tmp", "ANSIBLE_REMOTE_TEMP": home + "/remote-tmp",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_GATHERING": "explicit", "ANSIBLE_SSH_ARGS": "-o ControlMaster=no", "ANSIBLE_FORKS": "5", "LC_ALL": "C.UTF-8",
            "ANSIBLE_PIPELINING": "1",
        ])
        let began = monotonicNow()
        let result = try TestProcess.run(
            ["/usr/bin/timeout", "-k", "5", "170", "ansible-playbook", "-i", inventory, deployFolder + "/ansible/deploy.yml"] + extra,
            environment: environment, timeout: .seconds(190))
        print("ansible-playbook \(extra.joined(separator: " ")): exit \(result.code) after \(monotonicNow() - began)")
        return result
    }

    /// Runs deploy/baton-deploy over real ssh to `hostIndices` (as root@ADDRESS).
    func batonDeploy(_ hostIndices: [Int], _ args: [String]) throws -> CommandResult {
        let targets = hostIndices.map { "root@" + hosts[$0].address }.joined(separator: ",")
        return try TestProcess.run(
            [
                deployFolder + "/baton-deploy", "--ssh", fleet.sshCommand, "--hosts", targets, "--baton", binaries.executable("baton"),
                "--socket", FleetHosts.hostRoot + "/control.sock", "--releases-dir", FleetHosts.hostRoot + "/releases",
            ] + args, timeout: .seconds(180))
    }

    /// Keep-alive load against every host's app, from the root namespace through the veths.
    func load(connections: Int = 3) -> [LoadClient] {
        hosts.map { LoadClient(port: FleetHosts.appPort, connections: connections, maxDuration: .seconds(170), address: $0.addressValue) }
    }

    /// Waits for progress on every host's load, then stops it; returns the reports.
    static func finish(_ loads: [LoadClient]) -> [LoadClient.Report] {
        for load in loads { _ = load.waitForProgress(50) }
        return loads.map { $0.stop() }
    }

    /// Where `first` appears before `second` in `text` (both present).
    static func ordered(_ text: String, _ first: String, _ second: String) -> Bool {
        guard let a = text.range(of: first), let b = text.range(of: second) else { return false }
        return a.lowerBound < b.lowerBound
    }
}
