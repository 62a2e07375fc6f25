import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// A logs audit: a worker printing short lines without pause (`yes`) made `baton status` take
/// 0.5-2 s (64 KiB of `y` lines is 32,768 log lines per wakeup), and the 1 MiB left in a killed
/// flooding worker's pipe was logged at once, holding the loop 3.3 s (4.9 s at a take-over).
@Suite struct SupervisorOutputTests {
    /// The lines logged of slot 0's output.
    static func outputLines(_ h: DaemonHarness) -> [String] { h.log.lines(containing: "[slot 0 pid ") }

    @Test func aWakeupReadsAFewHundredLinesOfAWorker() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let pid = try #require(h.supervisor.slots[0].current?.pid)
        let child = try #require(h.host.child(pid))
        for _ in 0..<5000 { child.print("y") }
        h.log.clear()
        h.loop.pump()
        // About 512 lines, at most one 4 KiB read (2,048 two-byte lines) past that.
        let first = Self.outputLines(h).count
        #expect(first > 0 && first <= 2560, "\(first) lines in one wakeup")
        h.settle()
        #expect(Self.outputLines(h).count == 5000)
    }

    @Test func aGoneWorkersFullPipeLogsItsLastThousandLines() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let pid = try #require(h.supervisor.slots[0].current?.pid)
        let child = try #require(h.host.child(pid))
        h.log.clear()
        for i in 0..<5000 { child.print("line \(i)") }
        child.print("FATAL: the real error")
        child.end(.exited(1))
        h.settle()
        // The wakeup that read the pipe before the exit was seen may log its few hundred lines
        // first; then the rest: the count left out, and the last 1,000.
        let lines = Self.outputLines(h)
        let note = try #require(lines.firstIndex { $0.hasPrefix("WARNING [slot 0 pid ") }, "\(lines.count) lines, none WARN")
        #expect(lines[note].hasSuffix(" of output left in its pipe not logged; its last 1000 follow"), "\(lines[note])")
        #expect(note <= 2560 && lines.count == note + 1001, "\(note) lines before the note, \(lines.count) in all")
        #expect(lines[note + 1].hasSuffix("] line 4001"), "\(lines[note + 1])")
        #expect(lines.last?.hasSuffix("] FATAL: the real error") == true)
        #expect(h.supervisor.slots[0].workers.isEmpty || h.supervisor.slots[0].current?.pid != child.pid)
    }
}
