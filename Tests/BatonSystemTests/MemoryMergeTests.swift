import BatonCore
import BatonSystem
import BatonTestSupport
import BatonTestTraits
import CBatonLinux
import Glibc
import Testing

/// A python3 that writes 16 MiB, then forks a child that only sleeps: the child's copy of
/// those pages is shared with its parent copy-on-write until either writes them.
private let forkSharing = """
    import os, sys, time
    held = bytearray(b'\\xa5' * (16 << 20))
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    print("child", pid, file=sys.stderr, flush=True)
    os.waitpid(pid, 0)
    """

@Suite("Shared pages and PR_SET_MEMORY_MERGE on real processes", .serialized, .ownThread)
struct MemoryMergeTests {
    @Test("a forked child's copy-on-write pages count as shared, not private")
    func forkedChildSharesItsParentsPages() throws {
        let p = try TestProcess([python3, "-c", forkSharing], environment: childEnvironment)
        defer {
            CBatonLinuxShim.signalGroup(p.pid, SIGKILL)
            p.stop(timeout: .seconds(10))
        }
        let line = try #require(p.waitForLine(containing: "child ", timeout: .seconds(20)), "\(p.stderrLines)")
        let child = try #require(line.split(separator: " ").last.flatMap { Int32($0) })
        let m = try #require(ProcFS.memory(of: child, detailed: true))
        let shared = try #require(m.shared)
        let uss = try #require(m.uss)
        #expect(shared >= 16 << 20, "\(m)")
        #expect(uss < shared, "\(m)")
        // The tree of the parent sums both processes' shared figures.
        let tree = try #require(ProcFS.treeMemory(of: p.pid, detailed: true))
        #expect((tree.shared ?? 0) >= 32 << 20, "\(tree)")
        // A statm-only reading has no shared figure.
        #expect(ProcFS.memory(of: child, detailed: false)?.shared == nil)
    }

    @Test("memoryMerge marks the child mergeable before execve and the mark survives it")
    func mergeableSurvivesExec() throws {
        var request = SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment)
        request.memoryMerge = true
        let child = try LinuxProcessLauncher().spawn(request)
        defer { finish(child) }
        // spawn returns once execve closed the report pipe: what /proc shows is the new image.
        #expect(exeOf(child.pid) == "/usr/bin/sleep" || exeOf(child.pid) == "/bin/sleep", "\(exeOf(child.pid))")
        #expect(child.memoryMergeErrno == 0)
        let stat = try #require(ProcFS.ksmStat(of: child.pid))
        #expect(stat.mergeAny, "\(ProcFS.read("/proc/\(child.pid)/ksm_stat") ?? "-")")
    }

    @Test("without memoryMerge the child is not marked")
    func notMarkedByDefault() throws {
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment))
        defer { finish(child) }
        #expect(child.memoryMergeErrno == 0)
        #expect(ProcFS.ksmStat(of: child.pid)?.mergeAny == false)
    }

    @Test("memoryMerge with a user switch: marked before the privileges go, and still exec'd")
    func mergeableWithCredentials() throws {
        try #require(getuid() == 0, "needs root to switch users")
        var request = SpawnRequest(
            argv: ["/bin/sleep", "30"], environment: childEnvironment, credentials: Credentials(uid: 65534, gid: 65534, groups: []))
        request.memoryMerge = true
        let child = try LinuxProcessLauncher().spawn(request)
        defer { finish(child) }
        #expect(child.memoryMergeErrno == 0)
        #expect(ProcFS.ksmStat(of: child.pid)?.mergeAny == true)
    }
}

/// Where /proc/PID/exe points.
private func exeOf(_ pid: pid_t) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
    return n < 0 ? "" : String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
