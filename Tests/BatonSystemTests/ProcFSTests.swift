import BatonCore
import BatonSystem
import BatonTestSupport
import BatonTestTraits
import CBatonLinux
import Glibc
import Testing

/// A worker-like tree: sh → sh → sleep, plus a sleep that left the process
/// group (setsid). The innermost shell prints the pids once they exist.
private final class SleepTree {
    let process: TestProcess
    /// sleep in the worker's group, a grandchild of the root.
    let grandchild: pid_t
    /// sleep in its own session, a grandchild too.
    let escaped: pid_t
    private let escapedPidfd: Int32

    init() throws {
        // The escaped sleep announces itself after setsid; the grandchild's pid is known once forked.
        let inner = #"sleep 30 & echo "grandchild $!" >&2; setsid sh -c 'echo "escaped $$" >&2; exec sleep 30' & wait"#
        process = try TestProcess(
            ["/bin/sh", "-c", "sh -c '\(inner.replacing("'", with: #"'\''"#))' & wait"], environment: childEnvironment)
        let p = process
        func pid(after tag: String) throws -> pid_t {
            let line = try #require(p.waitForLine(containing: tag, timeout: .seconds(20)), "no '\(tag)' line")
            return try #require(line.split(separator: " ").last.flatMap { Int32($0) })
        }
        do {
            grandchild = try pid(after: "grandchild ")
            escaped = try pid(after: "escaped ")
        } catch {
            CBatonLinuxShim.signalGroup(p.pid, SIGKILL)
            throw error
        }
        escapedPidfd = CBatonLinux_pidfd_open(escaped)
    }

    /// Kills the whole group and the escaped sleep; reaps the root.
    func stop() {
        CBatonLinuxShim.signalGroup(process.pid, SIGKILL)
        if escapedPidfd >= 0 {
            CBatonLinuxShim.signal(pidfd: escapedPidfd, SIGKILL)
            close(escapedPidfd)
        }
        process.stop(timeout: .seconds(10))
    }
}

@Suite("ProcFS", .serialized, .ownThread)
struct ProcFSTests {
    @Test func treeFindsGrandchildrenIncludingOnesThatLeftTheGroup() throws {
        let tree = try SleepTree()
        defer { tree.stop() }
        let root = tree.process.pid
        let members = ProcFS.tree(of: root)
        #expect(members.first == root)
        #expect(members.count == 4, "\(members)")
        #expect(members.contains(tree.grandchild))
        #expect(members.contains(tree.escaped))
        #expect(Set(members).count == members.count)
        let middle = try #require(ProcFS.children(of: root).first)
        #expect(ProcFS.children(of: root) == [middle])
        #expect(Set(ProcFS.children(of: middle)) == [tree.grandchild, tree.escaped])
        #expect(ProcFS.parentPID(of: tree.grandchild) == middle)
        #expect(ProcFS.parentPID(of: root) == getpid())
        #expect(ProcFS.tree(of: tree.grandchild) == [tree.grandchild])
    }

    @Test func isInTree() throws {
        let tree = try SleepTree()
        defer { tree.stop() }
        let root = tree.process.pid
        #expect(ProcFS.isInTree(root, root: root))
        #expect(ProcFS.isInTree(tree.grandchild, root: root))
        #expect(getpgid(tree.escaped) != root)
        #expect(ProcFS.isInTree(tree.escaped, root: root))  // by the ppid chain
        #expect(!ProcFS.isInTree(getpid(), root: root))
        #expect(!ProcFS.isInTree(1, root: root))
        #expect(!ProcFS.isInTree(root, root: tree.grandchild))
    }

    @Test func memoryOfOneProcess() throws {
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment))
        defer { finish(child) }
        let cheap = try #require(ProcFS.memory(of: child.pid, detailed: false))
        #expect(cheap.rss > 0)
        #expect(cheap.rss % ProcFS.pageSize == 0)
        #expect(cheap.pss == nil && cheap.uss == nil)
        let detailed = try #require(ProcFS.memory(of: child.pid, detailed: true))
        let pss = try #require(detailed.pss)
        let uss = try #require(detailed.uss)
        #expect(detailed.rss > 0)
        #expect(pss > 0 && pss <= detailed.rss)
        #expect(uss > 0 && uss <= pss)
    }

    @Test func memoryOfThisProcessAndOfNobody() throws {
        let own = try #require(ProcFS.memory(of: getpid(), detailed: true))
        #expect(own.rss > 1024 * 1024)
        #expect(own.pss != nil && own.uss != nil)
        #expect(ProcFS.memory(of: 0x3FFF_FFFF, detailed: true) == nil)
        #expect(ProcFS.treeMemory(of: 0x3FFF_FFFF, detailed: false) == nil)
    }

    /// The holders of a socket, by inode: this process holds the one it bound; a socket
    /// nobody holds has none.
    @Test func socketHoldersFindTheProcessesHoldingASocket() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 1)
        var st = stat()
        try #require(fstat(socket.fd, &st) == 0)
        // Contains, not equals: a child another test spawns holds a copy until its execve.
        #expect(ProcFS.socketHolders(inode: UInt64(st.st_ino)).contains(getpid()))
        withExtendedLifetime(socket) {}
        #expect(ProcFS.socketHolders(inode: UInt64.max).isEmpty)
    }

    /// The listening sockets on a port, from /proc/net/tcp: what names the holders of a port in use.
    @Test func listeningInodesOfAPort() throws {
        let socket = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 1)
        var st = stat()
        try #require(fstat(socket.fd, &st) == 0)
        let port = try #require(UInt16(socket.address.split(separator: ":").last ?? ""))
        let text = try #require(ProcFS.read("/proc/net/tcp"))
        #expect(ProcParsers.listeningInodes(text, port: port) == [UInt64(st.st_ino)])
        withExtendedLifetime(socket) {}
        let sample = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4711 1 0 100 0 0 10 0
               1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4712 1 0 20 4 30 10 -1
               2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4713 1 0 100 0 0 10 0
            """
        #expect(ProcParsers.listeningInodes(sample, port: 8080) == [4711], "listening only, on that port")
        #expect(ProcParsers.listeningInodes(sample, port: 8081) == [4713])
        #expect(ProcParsers.listeningInodes("garbage\nmore garbage", port: 8080).isEmpty)
    }

    @Test func treeMemorySumsTheTree() throws {
        let tree = try SleepTree()
        defer { tree.stop() }
        let root = tree.process.pid
        let rootOnly = try #require(ProcFS.memory(of: root, detailed: true))
        let whole = try #require(ProcFS.treeMemory(of: root, detailed: true))
        #expect(whole.rss > rootOnly.rss)
        #expect(whole.pss != nil && whole.uss != nil)
        #expect((whole.uss ?? 0) > (rootOnly.uss ?? 0))
        let cheap = try #require(ProcFS.treeMemory(of: root, detailed: false))
        #expect(cheap.pss == nil)
    }

    /// An audit of misbehaving workers (3 of 3): one zombie in a worker's tree (a child it
    /// never waited for: Python's `Popen` without `wait`, a double fork) made the tree's PSS and
    /// USS unknown, so every memory rule, the footprint and the surge plan skipped the worker,
    /// and status said "workers' PSS 0 B". A zombie has no memory: it counts as none.
    @Test func aZombieInTheTreeHoldsNoMemory() throws {
        // The child exits only once its parent has exec'd sleep, which never waits for it: a
        // child that exited before the exec could be reaped by the shell (a fresh-clone CI run
        // saw no zombie for 10 s).
        let child = #"while [ "$(cat /proc/$PPID/comm)" != sleep ]; do sleep 0.01; done"#
        let p = try TestProcess(
            ["/bin/sh", "-c", #"sh -c '"# + child + #"' & echo "zombie $!" >&2; exec sleep 30"#], environment: childEnvironment)
        defer { CBatonLinuxShim.signalGroup(p.pid, SIGKILL); _ = p.stop(timeout: .seconds(10)) }
        let line = try #require(p.waitForLine(containing: "zombie ", timeout: .seconds(20)))
        let zombie = try #require(line.split(separator: " ").last.flatMap { Int32($0) })
        // The exec'd sleep never waits for it (bounded: 10 s).
        let deadline = ContinuousClock.now + .seconds(10)
        while ProcFS.read("/proc/\(zombie)/stat").flatMap(ProcParsers.statFields)?.state != "Z", ContinuousClock.now < deadline {
            pause(0.01)
        }
        try #require(ProcFS.read("/proc/\(zombie)/stat").flatMap(ProcParsers.statFields)?.state == "Z")
        #expect(ProcFS.tree(of: p.pid).contains(zombie))
        #expect(ProcFS.memory(of: zombie, detailed: true) == MemorySample(rss: 0, pss: 0, uss: 0, shared: 0))
        let whole = try #require(ProcFS.treeMemory(of: p.pid, detailed: true))
        #expect(whole.pss != nil && whole.uss != nil, "\(whole)")
    }

    @Test func readsAndSignalMasks() throws {
        // This thread is running; the process's main thread may well be asleep.
        #expect(ProcFS.read("/proc/thread-self/stat").flatMap(ProcParsers.statFields)?.state == "R")
        #expect(ProcFS.read("/nonexistent/baton") == nil)
        // Larger than one read buffer (8 KiB): read until EOF.
        let maps = try #require(ProcFS.read("/proc/self/maps"))
        #expect(maps.utf8.count > 8192)
        #expect(maps.hasSuffix("\n"))
        let mask = try #require(ProcFS.blockedSignals(of: getpid()))
        let ownStatus = try #require(ProcFS.read("/proc/\(getpid())/status"))
        #expect(ProcParsers.statusMask(ownStatus, field: "SigBlk") == mask)
        #expect(ProcFS.blockedSignals(of: 0x3FFF_FFFF) == nil)
        #expect(ProcFS.pageSize == UInt64(sysconf(Int32(_SC_PAGESIZE))))
    }
}
