import BatonCore
import BatonSystem

/// The `oom_kill` counter of baton's memory cgroup, as the OOM watch reads it: part of the
/// effects port (``SupervisorHost/openOOMCounter()``). `OOMCounterReader` in baton, a counter
/// the test raises in the tests of BatonDaemon.
protocol OOMCounting {
    /// The counter file (shown in `baton status`).
    var path: String { get }
    /// The kills counted so far.
    func read() throws(MemoryReadError) -> UInt64
}

/// The kernel log's OOM kill records (victim pid and name), as the OOM watch reads them:
/// `KernelLogReader` (/dev/kmsg) in baton, records the test adds in the tests of BatonDaemon.
protocol OOMKillLog: AnyObject {
    /// Whether the log could be opened (without it, kills are counted but victims are named only
    /// when a worker's own process dies).
    var isOpen: Bool { get }
    /// Why it could not be opened, if it could not.
    var openError: String? { get }
    /// The OOM kill records logged since the last call.
    func newOOMKills() -> [OOMKillMessage]
}

extension OOMCounterReader: OOMCounting {}

extension KernelLogReader: OOMKillLog {}
