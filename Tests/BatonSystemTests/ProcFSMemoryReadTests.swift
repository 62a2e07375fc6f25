import BatonCore
@testable import BatonSystem
import Testing

/// `ProcFS.memory` through a recorded /proc: a process that goes between its two reads.
@Suite struct ProcFSMemoryReadTests {
    static let statm = "2560 1024 512 1 0 300 0\n"
    static let rollup = """
        00400000-7fff00000000 ---p 00000000 00:00 0                              [rollup]
        Rss:                4096 kB
        Pss:                3000 kB
        Pss_Anon:           2000 kB
        Pss_File:           1000 kB
        Pss_Shmem:             0 kB
        Shared_Clean:       1500 kB
        Shared_Dirty:          0 kB
        Private_Clean:       500 kB
        Private_Dirty:      2096 kB
        Referenced:         4096 kB
        Anonymous:          2096 kB
        Swap:                  0 kB
        SwapPss:               0 kB

        """

    /// An apps audit: a worker's child (`/bin/true` in a loop) that exited between the statm
    /// and the smaps_rollup read left its PSS and USS unknown, and with them the whole tree's:
    /// the worker dropped out of the memory rules for that check (9 of 185 scrapes).
    @Test func aProcessGoneBetweenItsReadsIsGoneNotUnknown() {
        /// pid 7's memory, its files reading as `reads` lists them, one read after another.
        func memory(_ reads: [String: [String?]]) -> MemorySample? {
            var reads = reads
            return ProcFS.memory(of: 7, detailed: true) { path in reads[path]?.isEmpty == false ? reads[path]!.removeFirst() : nil }
        }
        let gone = memory(["/proc/7/statm": [Self.statm, nil], "/proc/7/smaps_rollup": [nil]])
        #expect(gone == nil)
        // A zombie by the second read holds nothing.
        let zombie = memory(["/proc/7/statm": [Self.statm, "0 0 0 0 0 0 0\n"], "/proc/7/smaps_rollup": [nil]])
        #expect(zombie == MemorySample(rss: 0, pss: 0, uss: 0, shared: 0))
        // Still there and unreadable: unknown, as before.
        let unknown = memory(["/proc/7/statm": [Self.statm, Self.statm], "/proc/7/smaps_rollup": [nil]])
        #expect(unknown?.rss == 1024 * ProcFS.pageSize && unknown?.pss == nil)
        // Both read: the rollup's figures.
        let read = memory(["/proc/7/statm": [Self.statm], "/proc/7/smaps_rollup": [Self.rollup]])
        // USS: Private_Dirty, at most Pss_Anon + Pss_Shmem.
        #expect(read?.pss == 3000 * 1024 && read?.uss == 2000 * 1024)
    }
}
