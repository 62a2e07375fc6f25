import Glibc
import Testing

@testable import BatonSystem

/// `ProcessPriority.set(tree:to:)` on a real tree.
@Suite("ProcessPriority: a tree's nice value")
struct ProcessPriorityTests {
    @Test("on a real tree (a shell and its two children): every thread gets the value, and back")
    func aRealTree() throws {
        let child = try LinuxProcessLauncher().spawn(
            SpawnRequest(argv: ["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"], environment: childEnvironment))
        defer {
            kill(-child.pid, SIGKILL)  // the sleeps too: the shell leads their process group
            _ = finish(child)
        }
        // The shell has started both sleeps once it waits: three members.
        let deadline = monotonicNow() + .seconds(10)
        while ProcFS.tree(of: child.pid).count < 3, monotonicNow() < deadline { usleep(2000) }
        let members = ProcFS.tree(of: child.pid)
        #expect(members.count == 3)
        #expect(ProcessPriority.set(tree: child.pid, to: 7) == 0)
        #expect(members.map { ProcessPriority.nice(of: $0) } == Array(repeating: 7, count: members.count))
        #expect(ProcessPriority.set(tree: child.pid, to: 0) == 0)
        #expect(members.map { ProcessPriority.nice(of: $0) } == Array(repeating: 0, count: members.count))
    }

    @Test("a busy tree's CPU time and its wait for a CPU, from /proc (stat and schedstat)")
    func cpuTimeOfABusyTree() throws {
        // More busy loops than CPUs, all in one tree: some of them queue for a CPU. Each loop
        // ends by itself (about 1 s of CPU here), and the whole process group is killed at the
        // end: killing the shell alone would leave its loops spinning.
        let loops = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) + 1
        let loop = "(i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done) &"
        let script = Array(repeating: loop, count: loops).joined(separator: " ") + " wait"
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/sh", "-c", script], environment: childEnvironment))
        defer {
            // The launcher made the shell a session (and process group) leader.
            kill(-child.pid, SIGKILL)
            _ = finish(child)
        }
        let deadline = monotonicNow() + .seconds(10)
        var time: ProcessPriority.CPUTime?
        while monotonicNow() < deadline {
            time = ProcessPriority.cpuTime(tree: child.pid)
            if let time, time.seconds >= 0.2, time.waitedSeconds > 0 { break }
            usleep(20_000)
        }
        let measured = try #require(time)
        #expect(measured.seconds >= 0.2 && measured.waitedSeconds > 0, "\(measured)")
        #expect(ProcessPriority.cpuTime(tree: -1) == nil)
    }
}
