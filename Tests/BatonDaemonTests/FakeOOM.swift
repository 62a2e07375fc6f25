import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc

/// baton's memory cgroup as the OOM watch sees it on the fake port: an `oom_kill` counter and a
/// kernel log that the test's `kill(_:comm:)` raises and writes, as the kernel does.
final class FakeOOM: OOMCounting, OOMKillLog {
    let path = "/fake/memory.events"
    private var count: UInt64 = 0
    private var records: [OOMKillMessage] = []

    /// The kernel kills `pid`: the counter rises and the log names the victim.
    func kill(_ pid: pid_t, comm: String) {
        count += 1
        records.append(OOMKillMessage(pid: pid, comm: comm))
    }

    func read() throws(MemoryReadError) -> UInt64 { count }
    var isOpen: Bool { true }
    var openError: String? { nil }
    func newOOMKills() -> [OOMKillMessage] {
        defer { records.removeAll() }
        return records
    }
}
