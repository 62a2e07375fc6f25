import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc

/// One look at a supervisor's process tree.
struct TreeSample: Sendable {
    /// Monotonic time of the sample.
    var at: Duration
    /// PSS summed over the supervisor and all its descendants (bytes).
    var totalPSS: UInt64
    /// The supervisor's direct children (its workers).
    var children: [pid_t]
    /// Those of `children` whose tree has a process holding the app's memory
    /// (RSS at least the sampler's `loadedBytes`): the app is loaded there.
    var loaded: Set<pid_t>
    /// The supervisor's own PSS (bytes).
    var supervisorPSS: UInt64 = 0
    /// PSS of each direct child's tree (bytes): what makes up a peak.
    var parts: [pid_t: UInt64] = [:]
}

/// Samples a supervisor's tree on its own thread every `interval` seconds:
/// total PSS (smaps_rollup of every process), the direct children, and which
/// of them loaded the app (the bench app fills its memory after its boot sleep).
final class TreeSampler: @unchecked Sendable {
    // @unchecked: state is in `Protected`; the rest is immutable.
    private let samples = Protected([TreeSample]())
    private let stopFlag = Protected(false)
    private var thread: Thread?

    init(root: pid_t, loadedBytes: UInt64, interval: Double = 0.2) {
        let samples = self.samples
        let stopFlag = self.stopFlag
        thread = Thread {
            while !stopFlag.withLock({ $0 }) {
                let sample = Self.sample(root: root, loadedBytes: loadedBytes)
                samples.withLock { $0.append(sample) }
                pause(interval)
            }
        }
    }

    /// One look at `root`'s tree.
    static func sample(root: pid_t, loadedBytes: UInt64) -> TreeSample {
        let own = ProcFS.memory(of: root, detailed: true)?.pss ?? 0
        var pss = own
        let children = ProcFS.children(of: root)
        var loaded = Set<pid_t>()
        var parts: [pid_t: UInt64] = [:]
        for child in children {
            for pid in ProcFS.tree(of: child) {
                guard let m = ProcFS.memory(of: pid, detailed: true) else { continue }
                pss += m.pss ?? 0
                parts[child, default: 0] += m.pss ?? 0
                if m.rss >= loadedBytes { loaded.insert(child) }
            }
        }
        return TreeSample(at: monotonicNow(), totalPSS: pss, children: children, loaded: loaded, supervisorPSS: own, parts: parts)
    }

    /// Stops sampling and returns every sample.
    func stop() -> [TreeSample] {
        stopFlag.withLock { $0 = true }
        thread?.join()
        thread = nil
        return samples.withLock { $0 }
    }
}

/// A process's own memory and CPU time, from /proc.
struct ProcessCost: Codable, Sendable {
    var rssMiB: Double
    var pssMiB: Double
    var ussMiB: Double
    /// CPU (user + system) as a percentage of one core over the window.
    var cpuPercent: Double

    /// Measures `pid` over `window` seconds.
    static func measure(_ pid: pid_t, window: Double) -> ProcessCost {
        let before = cpuTicks(pid)
        let start = monotonicNow()
        pause(window)
        let ticks = cpuTicks(pid) - before
        let elapsed = seconds(monotonicNow() - start)
        let m = ProcFS.memory(of: pid, detailed: true)
        let mib = { (b: UInt64?) in Double(b ?? 0) / 1_048_576 }
        return ProcessCost(
            rssMiB: mib(m?.rss), pssMiB: mib(m?.pss), ussMiB: mib(m?.uss),
            cpuPercent: Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK))) / elapsed * 100)
    }

    /// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
    static func cpuTicks(_ pid: pid_t) -> Int {
        guard let stat = ProcFS.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3): utime is field 14 → index 11.
        guard fields.count > 12, let u = Int(fields[11]), let s = Int(fields[12]) else { return 0 }
        return u + s
    }
}
