import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Synchronization

/// Memory figures the test sets: every worker tree reads `worker`, the host reads `host`
/// (unset: unreadable, as on a host without /proc/meminfo).
final class FakeMemory: MemoryReading {
    private let figures = Mutex<(host: MemoryReadings?, worker: MemorySample?, commitCharge: UInt64?)>((nil, nil, nil))
    private let reads = Mutex<[pid_t: Int]>([:])
    private let commitReads = Mutex(0)
    private let overrides = Mutex<[pid_t: MemorySample]>([:])

    /// What the tree of `pid` reads instead of `worker` (a mold, say).
    func setTree(_ sample: MemorySample?, of pid: pid_t) { overrides.withLock { $0[pid] = sample } }

    /// How many detailed reads (smaps_rollup: a walk of the page tables) each pid had.
    func detailedReads(of pid: pid_t) -> Int { reads.withLock { $0[pid, default: 0] } }

    /// What every worker tree reads.
    var worker: MemorySample? {
        get { figures.withLock { $0.worker } }
        set { figures.withLock { $0.worker = newValue } }
    }

    /// Every worker tree's commit charge (unset: unknown).
    var commitCharge: UInt64? {
        get { figures.withLock { $0.commitCharge } }
        set { figures.withLock { $0.commitCharge = newValue } }
    }

    /// How many tree commit charges were read (each walks a worker's maps on a real host).
    var commitChargeReads: Int { commitReads.withLock { $0 } }

    private let commitReadsOnLoopCount = Mutex(0)
    /// Commit charges read on the loop's thread (each walks a worker's maps on a real host).
    var commitChargeReadsOnLoop: Int { commitReadsOnLoopCount.withLock { $0 } }

    func treeCommitCharge(of pid: pid_t) -> UInt64? {
        commitReads.withLock { $0 += 1 }
        if let loop = loopThread.withLock({ $0 }), pthread_equal(loop, pthread_self()) != 0 { commitReadsOnLoopCount.withLock { $0 += 1 } }
        return commitCharge
    }

    /// What the host reads.
    var host: MemoryReadings? {
        get { figures.withLock { $0.host } }
        set { figures.withLock { $0.host = newValue } }
    }

    /// The thread the test drives the loop on (`DaemonHarness` sets it): a detailed read made
    /// there held the loop, and is counted by pid (`detailedReadsOnLoop(of:)`).
    let loopThread = Mutex<pthread_t?>(nil)
    private let loopReads = Mutex<[pid_t: Int]>([:])

    /// How many detailed reads of `pid` held the loop.
    func detailedReadsOnLoop(of pid: pid_t) -> Int { loopReads.withLock { $0[pid, default: 0] } }

    /// While set, detailed reads wait until it is cleared (a read stuck in the kernel); the
    /// loop's own reads (footprints, preflight) too, so a test sets it only when none is due.
    let stuck = Mutex(false)

    func treeMemory(of pid: pid_t, detailed: Bool) -> MemorySample? {
        while detailed && stuck.withLock({ $0 }) { usleep(1000) }
        if detailed { reads.withLock { $0[pid, default: 0] += 1 } }
        if detailed, let loop = loopThread.withLock({ $0 }), pthread_equal(loop, pthread_self()) != 0 {
            loopReads.withLock { $0[pid, default: 0] += 1 }
        }
        return overrides.withLock { $0[pid] } ?? worker
    }

    private let members = Mutex<[pid_t: Set<Int32>]>([:])

    /// The pids the tree of `pid` has (unset: `pid` alone), as a server that forks its workers.
    func setMembers(_ pids: Set<Int32>?, of pid: pid_t) { members.withLock { $0[pid] = pids } }

    func treeMembers(of pid: pid_t) -> (pids: Set<Int32>, memory: MemorySample?) {
        let memory = treeMemory(of: pid, detailed: true)
        return (memory == nil ? [] : members.withLock { $0[pid] } ?? [pid], memory)
    }

    func hostReadings() throws(MemoryReadError) -> MemoryReadings {
        guard let host else { throw .unreadable(path: "/proc/meminfo", errno: ENOENT) }
        return host
    }
}
