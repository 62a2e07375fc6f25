import BatonCore
import Glibc

/// Reads of /proc for the supervisor: process trees, memory, signal masks.
/// Reads are small and fast; baton calls them from its event-loop thread,
/// never from the cooperative pool.
public enum ProcFS {
    /// The whole content of a small file, or nil.
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Why /proc cannot be baton's view of its processes, or nil: not mounted, or the /proc of
    /// another pid namespace (`unshare --pid --fork` without `--mount-proc`), where every pid
    /// baton knows names another process. A pid-1 audit: status listed 17 host processes as
    /// strays, workers measured 0 B, and the stop sent SIGKILL to each of those pids.
    public static func ownNamespaceProblem() -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/self", &buffer, buffer.count - 1)
        guard n > 0 else { return "/proc is not mounted (\(SystemError("readlink", subject: "/proc/self"))): baton reads its processes there" }
        let seen = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard seen != String(getpid()) else { return nil }
        return
            "/proc is another pid namespace's (it shows baton as pid \(seen), baton is pid \(getpid())): mount a /proc of baton's own (unshare --mount-proc, a container's /proc)"
    }

    /// Direct children of `pid` (over all its threads).
    public static func children(of pid: pid_t) -> [pid_t] {
        var result: [pid_t] = []
        for tid in numericEntries(of: "/proc/\(pid)/task") {
            if let text = read("/proc/\(pid)/task/\(tid)/children") {
                result += text.split(separator: " ").compactMap { Int32($0.trimmingWhitespace) }
            }
        }
        return result
    }

    /// The inodes of the pipes `pid` holds, at any descriptor (its /proc link reads
    /// `pipe:[INODE]`; none when it is gone).
    public static func pipeInodes(of pid: pid_t) -> Set<UInt64> {
        Set(
            numericEntries(of: "/proc/\(pid)/fd").compactMap { fd in
                guard let text = descriptorLink(of: pid, fd: fd), text.hasPrefix("pipe:["), text.hasSuffix("]") else { return nil }
                return UInt64(text.dropFirst(6).dropLast())
            })
    }

    /// What descriptor `fd` of `pid` links to in /proc (`pipe:[7]`, `socket:[9]`, a path cut at
    /// 63 bytes), nil when it is closed or the process is gone.
    static func descriptorLink(of pid: pid_t, fd: Int32) -> String? {
        var link = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/\(pid)/fd/\(fd)", &link, link.count - 1)
        guard n > 0 else { return nil }
        return link.prefix(n).withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0), as: UTF8.self) }
    }

    /// The processes holding the socket of inode `inode` (a descriptor of theirs links to
    /// `socket:[INODE]`), by a walk of every /proc/PID/fd: one readlink per open descriptor on
    /// the host, so for rare moments only (a take-over after a crash).
    public static func socketHolders(inode: UInt64) -> [pid_t] {
        let target = "socket:[\(inode)]"
        return numericEntries(of: "/proc").filter { pid in
            numericEntries(of: "/proc/\(pid)/fd").contains { descriptorLink(of: pid, fd: $0) == target }
        }
    }

    /// The names of `directory` that are decimal numbers (pids in /proc, threads in task/,
    /// descriptors in fd/); none when it cannot be listed.
    static func numericEntries(of directory: String) -> [Int32] {
        (Filesystem.entryNames(of: directory) ?? []).compactMap { Int32($0) }
    }

    /// The live processes (zombies left out) of process group `pgid`, from every /proc/PID/stat.
    public static func groupMembers(_ pgid: pid_t) -> [pid_t] {
        numericEntries(of: "/proc").filter { pid in
            guard let fields = read("/proc/\(pid)/stat").flatMap(ProcParsers.statFields) else { return false }
            return fields.pgrp == pgid && fields.state != "Z"
        }
    }

    /// `pid` and all its descendants, parents first.
    public static func tree(of pid: pid_t) -> [pid_t] {
        var result: [pid_t] = [pid]
        var index = 0
        while index < result.count, result.count < 4096 {
            result += children(of: result[index])
            index += 1
        }
        return result
    }

    /// The parent pid, from /proc/PID/stat.
    public static func parentPID(of pid: pid_t) -> pid_t? {
        guard let stat = read("/proc/\(pid)/stat") else { return nil }
        return ProcParsers.statFields(stat)?.ppid
    }

    /// True when `candidate` is `root` or descends from it (walks ppid links;
    /// also true for a process still in root's process group).
    public static func isInTree(_ candidate: pid_t, root: pid_t) -> Bool {
        if candidate == root || getpgid(candidate) == root { return true }
        var current = candidate
        for _ in 0..<64 {
            guard let parent = parentPID(of: current), parent > 1 else { return false }
            if parent == root { return true }
            current = parent
        }
        return false
    }

    /// Memory of one process: RSS from statm (cheap), and PSS/USS/shared from
    /// smaps_rollup when `detailed` (walks page tables: ≈4 µs per MiB); nil when it is gone.
    public static func memory(of pid: pid_t, detailed: Bool) -> MemorySample? {
        memory(of: pid, detailed: detailed, read: read)
    }

    /// ``memory(of:detailed:)`` through `read` (a test's reader).
    static func memory(of pid: pid_t, detailed: Bool, read: (String) -> String?) -> MemorySample? {
        func statm() -> UInt64? { read("/proc/\(pid)/statm").flatMap { ProcParsers.statmRSS($0, pageSize: pageSize) } }
        guard let rss = statm() else { return nil }
        guard detailed else { return MemorySample(rss: rss, pss: nil, uss: nil) }
        guard let rollup = read("/proc/\(pid)/smaps_rollup"), let s = ProcParsers.smapsRollup(rollup) else {
            // A process without an address space (a zombie: statm all 0, smaps_rollup ESRCH)
            // holds no memory; unknown would make its whole tree's PSS unknown. So does one that
            // exited between the two reads (an apps audit: a worker whose child ran `/bin/true`
            // in a loop lost its PSS and USS for the check, and dropped out of the memory rules):
            // statm says so when read again.
            switch rss == 0 ? 0 : statm() {
            case nil: return nil
            case 0: return MemorySample(rss: 0, pss: 0, uss: 0, shared: 0)
            default: return MemorySample(rss: rss, pss: nil, uss: nil)
            }
        }
        return MemorySample(rss: s.rss, pss: s.pss, uss: s.uss, shared: s.shared)
    }

    /// KSM figures of one process (/proc/PID/ksm_stat), nil when it is gone or the kernel has
    /// no such file.
    public static func ksmStat(of pid: pid_t) -> KSMStat? {
        read("/proc/\(pid)/ksm_stat").flatMap(KSMStat.parse)
    }

    /// KSM figures summed over a worker's process tree.
    public static func treeKSM(of pid: pid_t) -> KSMStat? {
        var total: KSMStat?
        for member in tree(of: pid) {
            guard let k = ksmStat(of: member) else { continue }
            total = total.map { $0 + k } ?? k
        }
        return total
    }

    /// The content of /sys/kernel/mm/ksm/run ("0", "1" or "2" and a newline), nil when the
    /// kernel has no KSM.
    public static func ksmRun() -> String? {
        read(MemoryMerge.runPath)
    }

    /// Memory summed over a worker's process tree.
    public static func treeMemory(of pid: pid_t, detailed: Bool) -> MemorySample? {
        var total: MemorySample?
        for member in tree(of: pid) {
            guard let m = memory(of: member, detailed: detailed) else { continue }
            total = total.map { $0 + m } ?? m
        }
        return total
    }

    /// The blocked-signal mask (SigBlk) of a process.
    public static func blockedSignals(of pid: pid_t) -> UInt64? {
        guard let status = read("/proc/\(pid)/status") else { return nil }
        return ProcParsers.statusMask(status, field: "SigBlk")
    }

    /// The system page size.
    public static let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
}

extension Substring {
    /// Without leading and trailing spaces, tabs and newlines.
    var trimmingWhitespace: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\n" || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" { s = s.dropLast() }
        return s
    }
}
