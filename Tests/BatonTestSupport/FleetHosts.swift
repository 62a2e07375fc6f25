import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc

/// A fleet of real hosts on this machine: each host is a network namespace
/// (`baton-t-<runner pid>-h<N>`) joined to the root namespace by a veth pair,
/// with an address in a private 10.213.K.0/24 picked per run, its own OpenSSH
/// server (`sshd -D -f` with host keys, authorized_keys and config in the
/// test's temp directory) and its own `baton serve` listening on the host's
/// address. The namespaces share the filesystem: each host has its own folder.
///
/// `teardown()` stops every baton and sshd by pid, deletes the veth pairs and the
/// namespaces and the temp directory; call it in a `defer`.
public final class FleetHosts: @unchecked Sendable {
    // @unchecked: `hosts` is filled in init and only read afterwards; the
    // processes in it are themselves safe.

    /// One host of the fleet.
    public struct Host: Sendable {
        /// Its inventory name (`h1`, `h2`, ...).
        public var name: String
        /// Its network namespace.
        public var namespace: String
        /// Its IPv4 address (sshd and the app listen there).
        public var address: String
        /// The root-namespace end of its veth pair.
        public var veth: String
        /// Its folder as the test sees it; on the host (for its sshd and baton) it is
        /// `FleetHosts.hostRoot`.
        public var directory: String
        /// Its sshd (`sshd -D -e` inside the namespace).
        public var sshd: TestProcess
        /// Its `baton serve` (inside the namespace).
        public var baton: TestProcess
        /// The `baton` executable it serves with, which `cli` runs too: a CLI started from
        /// the build's own binary would share its pages with workers another chain measures.
        public var batonExecutable: String
        /// The control socket, as the test reaches it.
        public var controlSocket: String { directory + "/control.sock" }
        /// The address as IPv4 in host byte order (for `LoadClient`).
        public var addressValue: UInt32 { address.split(separator: ".").reduce(0) { $0 << 8 | UInt32($1)! } }

        /// Runs the `baton` CLI verb `args[0]` against this host's daemon (from the test).
        public func cli(_ args: [String]) throws -> CommandResult {
            try TestProcess.run([batonExecutable, args[0], "--socket", controlSocket] + args.dropFirst(), timeout: .seconds(60))
        }

        /// `baton status --json`, decoded.
        public func status() throws -> StatusReport {
            let result = try cli(["status", "--json"])
            guard result.code == 0 else { throw HarnessError("\(name): status failed (\(result.code)): \(result.stderr)") }
            return try JSONDecoder().decode(StatusReport.self, from: Data(result.stdout.utf8))
        }
    }

    /// Where every host sees its own folder (a bind mount in the mount namespace its
    /// sshd and baton run in), so every host has the same paths, as a real fleet does:
    /// `control.sock`, `releases/ID`, `baton.toml`.
    public static let hostRoot = "/run/baton-fleet"
    /// The port every host's app listens on (each namespace has its own ports).
    public static let appPort: UInt16 = 8080
    /// The temp directory with the keys, known_hosts, inventories and logs.
    public let directory: String
    /// The ssh client key the hosts accept.
    public let key: String
    /// The known_hosts file every ssh of the test uses.
    public let knownHosts: String
    /// The hosts, in order.
    public private(set) var hosts: [Host] = []
    /// The `baton` every host serves with.
    public let batonExecutable: String

    private static let prefix = "baton-t-"

    /// Creates `count` hosts. `sections(i)` is the TOML after `[app]` for host `i`
    /// (index from 0) with `ADDRESS` standing for its address; `beforeStart`
    /// receives each host's folder before its baton starts (to write `releases/r1`);
    /// `baton` is the executable the hosts serve with.
    public init(
        count: Int, workers: Int = 2, command: [String], sections: (Int) -> String, beforeStart: (String) -> Void,
        baton: String = TestPaths.executable("baton")
    ) throws {
        Self.removeStale()
        batonExecutable = baton
        directory = TestPaths.temporaryDirectory("fleet")
        key = directory + "/id_ed25519"
        knownHosts = directory + "/known_hosts"
        do {
            try Self.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "baton-fleet-test", "-f", key])
            try Self.run(["cp", key + ".pub", directory + "/authorized_keys"])
            let subnet = try Self.freeSubnet()
            // Every host's sshd and baton start before the first is waited for: the hosts
            // boot beside each other, not one after the other.
            for i in 0..<count {
                hosts.append(try startHost(i, subnet: subnet, workers: workers, command: command, sections: sections(i), beforeStart: beforeStart))
            }
            for host in hosts { try Self.waitUntilUp(host, workers: workers) }
        } catch {
            teardown()
            throw error
        }
    }

    /// The ssh command line for baton-deploy's `--ssh` and Ansible: the test's key and
    /// known_hosts, no user config, bounded connect.
    public var sshCommand: String { "ssh " + sshOptions.joined(separator: " ") }

    /// The options of `sshCommand` (no spaces inside any of them). The key exchange is
    /// curve25519 alone: OpenSSH 9's default, sntrup761x25519, costs the client ~70 ms of
    /// CPU per connection (measured here), and a fleet test opens over a hundred of them
    /// on two cores the other chains share. What the tests check does not depend on it.
    public var sshOptions: [String] {
        [
            "-F", "/dev/null", "-i", key, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + knownHosts,
            "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-o", "KexAlgorithms=curve25519-sha256",
        ]
    }

    /// Runs `command` on `host` over real ssh as root.
    public func ssh(_ host: Host, _ command: String) throws -> CommandResult {
        try TestProcess.run(["ssh"] + sshOptions + ["root@" + host.address, command], timeout: .seconds(30))
    }

    /// Stops a host's sshd: from then on it refuses ssh connections (its baton keeps serving).
    public func stopSSH(_ index: Int) { hosts[index].sshd.stop(timeout: .seconds(10)) }

    /// Takes a host's network link down (or up again): from the root namespace its
    /// address then answers "No route to host" (after 0.3 s of ARP, see `makeHost`).
    public func setLink(_ index: Int, up: Bool) throws {
        try Self.run(["ip", "-n", hosts[index].namespace, "link", "set", "eth0", up ? "up" : "down"])
    }

    /// Stops everything this fleet started (by pid) and deletes its namespaces and folders.
    /// Every baton and sshd gets its SIGTERM before the first is waited for, so the hosts
    /// drain their workers beside each other; one still running after its bound is killed.
    public func teardown() {
        for host in hosts where host.baton.exitCode == nil { host.baton.signal(SIGTERM) }
        for host in hosts where host.sshd.exitCode == nil { host.sshd.signal(SIGTERM) }
        for host in hosts {
            if host.baton.wait(timeout: .seconds(30)) == nil { host.baton.stop(timeout: .seconds(1)) }
            if host.sshd.wait(timeout: .seconds(10)) == nil { host.sshd.stop(timeout: .seconds(1)) }
            Self.removeNetwork(namespace: host.namespace, veth: host.veth)
        }
        hosts.removeAll()
        TestPaths.remove(directory)
    }

    /// Makes host `i`'s namespace, veth pair and folder and starts its sshd and baton,
    /// waiting for neither (`waitUntilUp`). On failure it stops what it started and
    /// removes its network; the hosts started before it are `init`'s to tear down.
    private func startHost(
        _ i: Int, subnet: Int, workers: Int, command: [String], sections: String, beforeStart: (String) -> Void
    ) throws -> Host {
        let name = "h\(i + 1)"
        let namespace = "\(Self.prefix)\(getpid())-\(name)"
        let veth = "bt\(getpid())\(name)"
        let address = "10.213.\(subnet).\(11 + i)"
        let gateway = "10.213.\(subnet).1"
        try Self.run(["ip", "netns", "add", namespace])
        // The pair is made inside the namespace's lifetime: deleting the namespace deletes both ends.
        let setup: [[String]] = [
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace],
            ["ip", "addr", "add", gateway + "/32", "dev", veth],
            ["ip", "link", "set", veth, "up"],
            ["ip", "route", "add", address + "/32", "dev", veth, "src", gateway],
            ["ip", "-n", namespace, "addr", "add", address + "/24", "dev", "eth0"],
            ["ip", "-n", namespace, "link", "set", "lo", "up"],
            ["ip", "-n", namespace, "link", "set", "eth0", "up"],
        ]
        for argv in setup {
            do { try Self.run(argv) } catch {
                Self.removeNetwork(namespace: namespace, veth: veth)
                throw error
            }
        }
        // ARP on the root end retries every 100 ms, not every second: a connect to a host
        // whose link is down then fails with "No route to host" after 3 tries in 0.3 s, not
        // 3 s. The host's own end answers ARP in the kernel at once.
        Self.setARPRetransmit(veth: veth, milliseconds: 100)
        let folder = directory + "/" + name
        _ = mkdir(folder, 0o755)
        _ = mkdir(folder + "/releases", 0o755)
        _ = mkdir(folder + "/releases/r1", 0o755)
        beforeStart(folder)
        let root = Self.hostRoot
        TestPaths.write(
            folder + "/baton.toml",
            BatonHarness.configText(
                name: "fleet", command: command, release: root + "/releases/r1", workers: workers, directory: root, extraApp: "",
                sections: sections.replacing("ADDRESS", with: address), controlSocket: root + "/control.sock", control: ""))
        var started: [TestProcess] = []
        do {
            let sshd = try startSSHD(name: name, namespace: namespace, address: address, folder: folder)
            started.append(sshd)
            let baton = try TestProcess(
                Self.inHost(namespace, folder, [batonExecutable, "serve", "--config", root + "/baton.toml"]),
                environment: TestPaths.cleanEnvironment())
            started.append(baton)
            return Host(
                name: name, namespace: namespace, address: address, veth: veth, directory: folder, sshd: sshd, baton: baton,
                batonExecutable: batonExecutable)
        } catch {
            started.reversed().forEach { $0.stop(timeout: .seconds(10)) }
            Self.removeNetwork(namespace: namespace, veth: veth)
            throw error
        }
    }

    /// Waits until `host`'s sshd listens and its baton has `workers` workers ready.
    private static func waitUntilUp(_ host: Host, workers: Int) throws {
        guard host.sshd.waitForLine(containing: "Server listening on", timeout: .seconds(20)) != nil else {
            throw HarnessError("sshd of \(host.name) did not start:\n\(host.sshd.stderrLines.joined(separator: "\n"))")
        }
        guard host.baton.waitForLine(containing: "all \(workers) workers ready", timeout: .seconds(60)) != nil else {
            throw HarnessError("baton of \(host.name) did not become ready:\n\(host.baton.stderrLines.suffix(30).joined(separator: "\n"))")
        }
    }

    /// argv running `command` in host `namespace`: `ip netns exec` gives it a mount
    /// namespace of its own (slave to ours), where a tmpfs on /run holds sshd's
    /// privilege separation folder /run/sshd (nothing is created under the machine's
    /// /run) and `folder` is bound at `hostRoot`.
    ///
    /// The runner's /root/.bashrc is hidden there (/dev/null bound over it): bash runs it
    /// for every command sshd starts, so the hosts ran the test machine's dotfiles on each
    /// ssh of a deploy (0.2 s and 0.1 s of CPU each with pyenv's init here; one that prints
    /// would break `baton status --json` over ssh). The hosts run none of the runner's
    /// dotfiles.
    private static func inHost(_ namespace: String, _ folder: String, _ command: [String]) -> [String] {
        [
            "/usr/sbin/ip", "netns", "exec", namespace, "/bin/sh", "-c",
            "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/sshd \(hostRoot) && mount --bind \"$0\" \(hostRoot)"
                + " && { [ ! -f /root/.bashrc ] || mount --bind /dev/null /root/.bashrc; } && exec \"$@\"",
            folder,
        ] + command
    }

    /// sshd inside the namespace, on the host's address only, root login by the test's key
    /// (started; `waitUntilUp` waits for it to listen).
    private func startSSHD(name: String, namespace: String, address: String, folder: String) throws -> TestProcess {
        let hostKey = directory + "/\(name)-host-key"
        try Self.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", hostKey])
        let config = directory + "/\(name)-sshd_config"
        TestPaths.write(
            config,
            """
            ListenAddress \(address):22
            HostKey \(hostKey)
            PidFile none
            UsePAM no
            StrictModes no
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            AuthorizedKeysFile \(directory)/authorized_keys
            MaxStartups 50
            LogLevel INFO

            """)
        return try TestProcess(Self.inHost(namespace, folder, ["/usr/sbin/sshd", "-D", "-e", "-f", config]))
    }

    /// A 10.213.K.0/24 no address or route of this machine uses.
    private static func freeSubnet() throws -> Int {
        let used = try run(["ip", "-4", "addr", "show"]).stdout + (try run(["ip", "-4", "route", "show", "table", "all"]).stdout)
        let start = Int(getpid() % 200)
        for step in 0..<200 {
            let k = 20 + (start + step) % 200
            if !used.contains("10.213.\(k).") { return k }
        }
        throw HarnessError("no free 10.213.K.0/24")
    }

    /// Sets `net.ipv4.neigh.VETH.retrans_time_ms` of a veth this fleet made (gone with it).
    /// Best effort: without it a down link is found in 3 s instead of 0.3 s.
    private static func setARPRetransmit(veth: String, milliseconds: Int) {
        let fd = open("/proc/sys/net/ipv4/neigh/\(veth)/retrans_time_ms", O_WRONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let text = Array("\(milliseconds)\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Deletes a host's veth pair, then its namespace. Deleting the root end removes
    /// the pair before `ip` returns; a deleted namespace's links go later, on the
    /// kernel's cleanup worker, so `netns del` alone left the veth listed for a
    /// moment after it returned.
    private static func removeNetwork(namespace: String, veth: String) {
        _ = try? TestProcess.run(["ip", "link", "del", veth], timeout: .seconds(10))
        _ = try? TestProcess.run(["ip", "netns", "del", namespace], timeout: .seconds(10))
    }

    /// Deletes the namespaces of earlier runs of this suite whose test runner is gone
    /// (a crash skipped their teardown), after killing what still runs in them.
    private static func removeStale() {
        guard let list = try? run(["ip", "netns", "list"]) else { return }
        for line in list.stdout.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix) else { continue }
            let fields = name.dropFirst(prefix.count).split(separator: "-")
            guard fields.count == 2, let owner = Int32(fields[0]), fields[1].hasPrefix("h") else { continue }
            if owner == getpid() || kill(owner, 0) == 0 || errno != ESRCH { continue }
            if let pids = try? run(["ip", "netns", "pids", name]) {
                for pid in pids.stdout.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? run(["ip", "netns", "del", name])
        }
    }

    /// Runs a setup command; throws with its output when it fails.
    @discardableResult
    private static func run(_ argv: [String]) throws -> CommandResult {
        let result = try TestProcess.run(argv, timeout: .seconds(30))
        guard result.code == 0 else { throw HarnessError("\(argv.joined(separator: " ")) failed (\(result.code)): \(result.stderr)") }
        return result
    }
}
