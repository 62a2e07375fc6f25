import BatonCore
import BatonSystem
import Glibc

/// The process table as the supervisor sees it: which processes make up a worker's tree, their
/// states, a process's start time and group, whether a pid still exists. Part of the effects port
/// (``SupervisorHost/processes``): /proc in baton, a table the test writes in the tests of
/// BatonDaemon (the notify sender check, the liveness check, OOM attribution and take-over run
/// on it without a process). Sendable: the liveness check reads it on the offload pool.
protocol ProcessTable: Sendable {
    /// `pid` and all its descendants, parents first (just `pid` when it has none or is gone).
    func tree(of pid: pid_t) -> [pid_t]
    /// Whether `candidate` is `root` or descends from it (or is still in root's process group).
    func isInTree(_ candidate: pid_t, root: pid_t) -> Bool
    /// The state letter of each process of the tree rooted at `pid` (R, S, T, Z...); a process
    /// gone meanwhile is left out.
    func processStates(ofTree pid: pid_t) -> [Character]
    /// The start time of `pid` (clock ticks since boot), nil when it is gone or a zombie: with
    /// the pid, it names one process across pid reuse.
    func startTime(of pid: pid_t) -> UInt64?
    /// Whether a process `pid` exists (a zombie included).
    func exists(_ pid: pid_t) -> Bool
    /// The process group of `pid` (getpgid), nil when it is gone.
    func processGroup(of pid: pid_t) -> pid_t?
    /// The session of `pid` (getsid), nil when it is gone. A worker never leads one (it is a
    /// group of its own in baton's session); a process that called setsid() does.
    func session(of pid: pid_t) -> pid_t?
    /// The processes that hold the socket of inode `inode` (take-over: the workers a dead
    /// baton did not record still share its listening sockets).
    func socketHolders(inode: UInt64) -> [pid_t]
    /// The inodes of the TCP sockets listening on `port` in baton's network namespace.
    func tcpListenerInodes(port: UInt16) -> [UInt64]
    /// The command name of `pid` (`comm`), nil when it is gone.
    func commandName(of pid: pid_t) -> String?
    /// The children of `pid` (zombies included), from every one of its threads.
    func children(of pid: pid_t) -> [pid_t]
    /// The inodes of the pipes `pid` holds, at any descriptor (none when it is gone): a
    /// worker's output pipe names the spawn it came from, wherever the worker put it.
    func pipes(of pid: pid_t) -> Set<UInt64>
    /// The environment `pid`'s program started with (/proc/PID/environ: what it was given at
    /// exec, or its parent's at exec for a fork that did not exec), nil when it cannot be read.
    func environment(of pid: pid_t) -> [String]?
    /// The live processes (zombies left out) whose process group is `pgid`.
    func groupMembers(_ pgid: pid_t) -> [pid_t]
}

extension ProcessTable {
    /// Unknown (the tests' tables).
    func environment(of pid: pid_t) -> [String]? { nil }
    /// None (the tests' tables).
    func groupMembers(_ pgid: pid_t) -> [pid_t] { [] }
}

/// The real table: /proc, and kill(pid, 0).
struct ProcProcessTable: ProcessTable {
    func tree(of pid: pid_t) -> [pid_t] { ProcFS.tree(of: pid) }
    func isInTree(_ candidate: pid_t, root: pid_t) -> Bool { ProcFS.isInTree(candidate, root: root) }
    func processStates(ofTree pid: pid_t) -> [Character] {
        ProcFS.tree(of: pid).compactMap { p in ProcFS.read("/proc/\(p)/stat").flatMap(ProcParsers.statFields)?.state }
    }
    func startTime(of pid: pid_t) -> UInt64? { ProcFS.startTime(of: pid) }
    func exists(_ pid: pid_t) -> Bool { Glibc.kill(pid, 0) == 0 || errno == EPERM }
    func processGroup(of pid: pid_t) -> pid_t? {
        let group = getpgid(pid)
        return group >= 0 ? group : nil
    }
    func session(of pid: pid_t) -> pid_t? {
        let session = getsid(pid)
        return session >= 0 ? session : nil
    }
    func socketHolders(inode: UInt64) -> [pid_t] { ProcFS.socketHolders(inode: inode) }
    func tcpListenerInodes(port: UInt16) -> [UInt64] {
        ["/proc/net/tcp", "/proc/net/tcp6"].flatMap { ProcFS.read($0).map { ProcParsers.listeningInodes($0, port: port) } ?? [] }
    }
    func commandName(of pid: pid_t) -> String? { ProcFS.read("/proc/\(pid)/comm").map { $0.filter { $0 != "\n" } } }
    func children(of pid: pid_t) -> [pid_t] { ProcFS.children(of: pid) }
    func pipes(of pid: pid_t) -> Set<UInt64> { ProcFS.pipeInodes(of: pid) }
    func groupMembers(_ pgid: pid_t) -> [pid_t] { ProcFS.groupMembers(pgid) }
    func environment(of pid: pid_t) -> [String]? {
        ProcFS.read("/proc/\(pid)/environ").map { $0.split(separator: "\0").map(String.init) }
    }
}
