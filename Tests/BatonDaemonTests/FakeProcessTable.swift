@testable import BatonDaemon
import Glibc
import Synchronization

/// A process table the test writes: each fake worker's tree (its pid alone unless the test adds
/// members), process states and start times. A pid the test never named does not exist.
final class FakeProcessTable: ProcessTable {
    private struct Table {
        var members: [pid_t: [pid_t]] = [:]
        var states: [pid_t: Character] = [:]
        var startTimes: [pid_t: UInt64] = [:]
        var groups: [pid_t: pid_t] = [:]
        var sessions: [pid_t: pid_t] = [:]
        var known: Set<pid_t> = []
        var socketHolders: [UInt64: [pid_t]] = [:]
        var children: [pid_t: [pid_t]] = [:]
    }
    private let table = Mutex(Table())

    /// Makes `members` part of `root`'s tree (after `root` itself), alive.
    func add(_ members: [pid_t], to root: pid_t) {
        table.withLock {
            $0.members[root, default: []] += members
            $0.known.formUnion(members + [root])
        }
    }

    /// Makes `pids` children of this (test) process, alive, as processes handed to baton are;
    /// each in `groups[pid]`'s process group where given.
    func adopt(_ pids: [pid_t], groups: [pid_t: pid_t] = [:]) {
        setChildren(pids, of: getpid())
        for (i, pid) in pids.enumerated() {
            setStartTime(42 + UInt64(i), of: pid)
            if let group = groups[pid] { setProcessGroup(group, of: pid) }
        }
    }

    /// Makes `pid` gone: no longer alive, in no tree.
    func forget(_ pid: pid_t) {
        table.withLock {
            $0.known.remove(pid)
            for root in $0.members.keys { $0.members[root]?.removeAll { $0 == pid } }
        }
    }

    /// Sets the state letter of `pid` (R when unset).
    func setState(_ state: Character, of pid: pid_t) { table.withLock { $0.states[pid] = state } }

    /// Sets the start time of `pid` (nil: gone).
    func setStartTime(_ ticks: UInt64?, of pid: pid_t) {
        table.withLock {
            $0.startTimes[pid] = ticks
            if ticks != nil { $0.known.insert(pid) }
        }
    }

    /// Sets the process group of `pid` (nil, the default: unknown, as for a pid gone).
    func setProcessGroup(_ group: pid_t?, of pid: pid_t) { table.withLock { $0.groups[pid] = group } }

    /// The thread the test drives the loop on (`DaemonHarness` sets it).
    let loopThread = Mutex<pthread_t?>(nil)
    private let walksOnLoopCount = Mutex(0)
    /// Trees walked on the loop's thread (each reads /proc of every member on a real host).
    var treeWalksOnLoop: Int { walksOnLoopCount.withLock { $0 } }

    func tree(of pid: pid_t) -> [pid_t] {
        if let loop = loopThread.withLock({ $0 }), pthread_equal(loop, pthread_self()) != 0 { walksOnLoopCount.withLock { $0 += 1 } }
        return [pid] + table.withLock { $0.members[pid] ?? [] }
    }

    func isInTree(_ candidate: pid_t, root: pid_t) -> Bool { tree(of: root).contains(candidate) }

    func processStates(ofTree pid: pid_t) -> [Character] {
        let pids = tree(of: pid)
        return table.withLock { t in pids.map { t.states[$0] ?? "R" } }
    }

    func startTime(of pid: pid_t) -> UInt64? { table.withLock { $0.startTimes[pid] } }

    func exists(_ pid: pid_t) -> Bool { table.withLock { $0.known.contains(pid) } }

    func processGroup(of pid: pid_t) -> pid_t? { table.withLock { $0.groups[pid] } }

    /// Sets the session of `pid` (nil, the default: unknown, as for a pid gone).
    func setSession(_ session: pid_t?, of pid: pid_t) { table.withLock { $0.sessions[pid] = session } }

    func session(of pid: pid_t) -> pid_t? { table.withLock { $0.sessions[pid] } }

    /// Makes `pids` the holders of the socket of inode `inode`.
    func setSocketHolders(_ pids: [pid_t], inode: UInt64) { table.withLock { $0.socketHolders[inode] = pids } }

    func socketHolders(inode: UInt64) -> [pid_t] { table.withLock { $0.socketHolders[inode] ?? [] } }
    func tcpListenerInodes(port: UInt16) -> [UInt64] { [] }
    func commandName(of pid: pid_t) -> String? { nil }

    /// Makes `pids` the children of `parent`, beyond the host's own children (none unless set).
    func setChildren(_ pids: [pid_t], of parent: pid_t) { table.withLock { $0.children[parent] = pids } }

    func children(of pid: pid_t) -> [pid_t] { table.withLock { $0.children[pid] ?? [] } }

    /// No fake process holds a pipe (the kill of a failed mold spawn's stray is tested on real
    /// processes, `MoldTests`).
    func pipes(of pid: pid_t) -> Set<UInt64> { [] }
}
