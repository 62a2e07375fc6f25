/// An estimate of the memory one new worker takes, and where it comes from.
public struct FootprintEstimate: Sendable, Equatable, Codable {
    /// Where the figure comes from.
    public enum Source: Sendable, Equatable, Codable {
        /// The median of this many recently started workers of the release (their settled trees).
        case measured(workers: Int)
        /// `deploy.worker_footprint`.
        case configured
        /// The median of this many recently started workers of another release (the release
        /// has none measured yet and nothing is configured).
        case otherRelease(workers: Int)
        /// The largest tree seen so far of this many workers whose trees have not settled yet
        /// (just started: nothing better is known).
        case settling(workers: Int)
    }

    /// Bytes (PSS) per new worker.
    public var bytes: UInt64
    /// Where it comes from.
    public var source: Source

    /// Creates an estimate.
    public init(bytes: UInt64, source: Source) {
        self.bytes = bytes
        self.source = source
    }
}

/// Learns what a new worker costs: the PSS of its whole process tree once the tree has
/// **settled** after ready. Servers that notify ready before they fork their workers (gunicorn
/// `--preload`, puma in cluster mode) are not measured half-grown: a boot settles when
/// ``settleSamples`` consecutive samples show the same set of pids and totals within
/// ``tolerance`` (a fraction of the total, at least ``toleranceFloor`` bytes); its footprint is
/// the largest total of that run. A boot that has not settled ``maxWait`` after ready is
/// finished with the largest total seen (bounded, and on the safe side); a worker that exits
/// before either is not counted.
///
/// The last `keep` footprints per release are kept; the estimate is their median, so one odd
/// boot does not move it.
public struct FootprintTracker: Sendable, Equatable {
    /// How long after ready a boot may take to settle.
    public let maxWait: Duration
    /// Finished boots kept per release.
    public let keep: Int
    /// Consecutive samples (the one at ready included) that must agree.
    public let settleSamples: Int
    /// How far apart their totals may be, as a fraction of the largest.
    public let tolerance: Double
    /// ... but at least this many bytes (small trees jitter by a few pages).
    public let toleranceFloor: UInt64
    /// Boots still settling, by pid.
    private var open: [Int32: OpenBoot] = [:]
    /// Finished footprints per release, oldest first.
    private var finished: [String: [UInt64]] = [:]
    /// Releases by when a boot of theirs last finished, most recent last (at most
    /// ``releasesKept``; the last one feeds ``FootprintEstimate/Source/otherRelease(workers:)``).
    private var releaseOrder: [String] = []

    /// Releases a worker of which the kernel's OOM killer took before its tree settled, and no
    /// boot of which settled since: their footprint is unknown (see ``killedBeforeSettling(release:)``).
    public private(set) var killedUnsettled: Set<String> = []

    /// Releases whose footprints are remembered.
    public static let releasesKept = 8

    /// The finished footprints per release and the releases' order, as an earlier image hands
    /// them to the next (`baton upgrade`).
    public var remembered: (footprints: [String: [UInt64]], order: [String]) { (finished, releaseOrder) }

    /// Takes over what an earlier image remembered (boots still settling are not carried).
    public mutating func remember(footprints: [String: [UInt64]], order: [String]) {
        finished = footprints.mapValues { Array($0.suffix(keep)) }
        releaseOrder = Array(order.filter { footprints[$0] != nil }.suffix(Self.releasesKept))
    }
    /// How often the supervisor samples a settling tree.
    public static let sampleInterval: Duration = .seconds(1)

    /// A boot not settled yet.
    private struct OpenBoot: Sendable, Equatable {
        var release: String
        var readyAt: Duration
        /// The pid set of the current run.
        var pids: Set<Int32>
        /// The totals of the current run (same pids, within tolerance), oldest first.
        var run: [UInt64]
        /// The largest total seen since ready.
        var peak: UInt64
        /// The total at ready.
        var atReady: UInt64
        /// The last totals of the same pids, oldest first (at most 5): a steady leak's slope.
        var recent: [UInt64]
    }

    /// Creates a tracker (defaults: 3 samples within 2 % or 1 MiB, settled within 60 s, the last
    /// 5 boots).
    public init(
        maxWait: Duration = .seconds(60), keep: Int = 5, settleSamples: Int = 3, tolerance: Double = 0.02,
        toleranceFloor: UInt64 = 1 << 20
    ) {
        self.maxWait = maxWait
        self.keep = max(1, keep)
        self.settleSamples = max(2, settleSamples)
        self.tolerance = tolerance
        self.toleranceFloor = toleranceFloor
    }

    /// A worker became ready; `pids` is its tree, `pss` the tree's PSS, at `now`.
    public mutating func workerReady(pid: Int32, release: String, pids: Set<Int32>, pss: UInt64, now: Duration) {
        guard pss > 0 else { return }
        open[pid] = OpenBoot(release: release, readyAt: now, pids: pids, run: [pss], peak: pss, atReady: pss, recent: [pss])
    }

    /// A sample of a settling worker's tree. Returns the footprint when this sample settles
    /// the boot (or ends its wait), nil while it is still settling (or is not tracked).
    @discardableResult
    public mutating func sampled(pid: Int32, pids: Set<Int32>, pss: UInt64, now: Duration) -> UInt64? {
        guard var boot = open[pid] else { return nil }
        // A tree that reads 0 B cannot be measured (a zombie leader: it is going away): not
        // counted (a soak audit: "footprint settled: 0 B", and preflight planned with 0 B).
        guard pss > 0 else {
            workerExited(pid: pid)
            return nil
        }
        boot.peak = max(boot.peak, pss)
        if pids != boot.pids {
            // A fork or an exit: the tree is still changing; a new run starts here.
            boot.pids = pids
            boot.run = [pss]
            boot.recent = [pss]
        } else {
            boot.run.append(pss)
            while boot.run.count > 1, !agree(boot.run) { boot.run.removeFirst() }
            boot.recent = Array((boot.recent + [pss]).suffix(5))
        }
        if boot.run.count >= settleSamples {
            let footprint = Self.lessTheLeak(boot.run.suffix(settleSamples), since: now - boot.readyAt, floor: boot.atReady)
            open[pid] = nil
            record(footprint, release: boot.release)
            return footprint
        }
        if now - boot.readyAt >= maxWait {
            // Growing by the same step at every sample: a leak faster than the tolerance (a
            // re-audit: 2 MiB/s never agreed within 2 %, and its peak at 60 s, 166.7 MiB, was the
            // footprint of workers of 46 MiB), its slope taken off; a tree that grows unevenly
            // may still be booting: its peak, on the safe side.
            let footprint = steady(boot.recent) ? Self.lessTheLeak(boot.recent[...], since: now - boot.readyAt, floor: boot.atReady) : boot.peak
            open[pid] = nil
            record(footprint, release: boot.release)
            return footprint
        }
        open[pid] = boot
        return nil
    }

    /// The largest total of a settled run, less what a steady leak added since ready at the
    /// run's slope, and at least the total at ready. A memory audit: a worker leaking 1 MiB/s
    /// passed the 2 % tolerance once it had grown to 80 MiB, 44 s after ready (fresh ones of the
    /// release settled at 45–48 MiB), and preflight planned new workers of 80 MiB; one leaking
    /// 2 MiB/s, of 122 MiB. A run that settled in a tree of flat totals has no slope to take off.
    static func lessTheLeak(_ run: ArraySlice<UInt64>, since elapsed: Duration, floor: UInt64) -> UInt64 {
        guard let top = run.max(), let first = run.first, let last = run.last else { return floor }
        guard run.count > 1, last > first else { return top }
        let perSample = Double(last - first) / Double(run.count - 1)
        let samples = Double(elapsed.components.seconds) / Double(sampleInterval.components.seconds)
        let leaked = perSample * samples
        guard leaked.isFinite, leaked < Double(top) else { return min(top, floor) }
        return max(min(top, floor), top - UInt64(leaked))
    }

    /// Whether `pid`'s boot is still settling.
    public func isSettling(pid: Int32) -> Bool { open[pid] != nil }

    /// The kernel's OOM killer took a worker of `release` before its tree settled: the figures
    /// of its earlier boots, the configured one and another release's are too small for it, so
    /// its footprint is unknown (a deploy of it replaces) until one of its boots settles. A
    /// memory audit (4 of 4): a release of 250 MiB workers was planned with the old release's
    /// 61 MiB after each attempt's new workers were killed, a surge of 3 every time, and once
    /// the kernel took a serving worker.
    public mutating func killedBeforeSettling(release: String) {
        killedUnsettled.insert(release)
        finished[release] = nil
        releaseOrder.removeAll { $0 == release }
    }

    /// A worker exited (or was replaced) before its tree settled: it is not counted.
    public mutating func workerExited(pid: Int32) {
        open[pid] = nil
    }

    /// Whether `totals` (5 of them) rise by steps within a quarter of their mean of each other
    /// (at least ``toleranceFloor``): a leak's. Not the total's tolerance (a re-audit: 2 % of
    /// 300 MiB let steps of 0.5 to 8 MiB pass as one).
    private func steady(_ totals: [UInt64]) -> Bool {
        guard totals.count >= 5 else { return false }
        let steps = zip(totals.dropFirst(), totals).map { Int64(bitPattern: $0 &- $1) }
        guard let low = steps.min(), let high = steps.max(), low > 0 else { return false }
        let mean = Double(steps.reduce(0, +)) / Double(steps.count)
        return UInt64(high - low) <= max(toleranceFloor, UInt64(mean / 4))
    }

    /// Whether the totals of a run are within the tolerance of each other.
    private func agree(_ run: [UInt64]) -> Bool {
        guard let low = run.min(), let high = run.max() else { return true }
        return high - low <= max(toleranceFloor, UInt64(Double(high) * tolerance))
    }

    /// The footprint for a new worker of `release`: nil while it is unknown after an OOM kill
    /// (``killedBeforeSettling(release:)``), else settled boots of that release, else
    /// `configured`, else the largest tree so far of its boots still settling, else settled
    /// boots of the release measured last, else the largest tree so far of any boot still
    /// settling, else nil.
    public func estimate(release: String, configured: UInt64?) -> FootprintEstimate? {
        if killedUnsettled.contains(release) { return nil }
        if let own = finished[release], !own.isEmpty {
            return FootprintEstimate(bytes: Self.median(own), source: .measured(workers: own.count))
        }
        if let configured { return FootprintEstimate(bytes: configured, source: .configured) }
        let settling = open.values.filter { $0.release == release }
        if let peak = settling.map(\.peak).max() { return FootprintEstimate(bytes: peak, source: .settling(workers: settling.count)) }
        if let last = releaseOrder.last, let other = finished[last], !other.isEmpty {
            return FootprintEstimate(bytes: Self.median(other), source: .otherRelease(workers: other.count))
        }
        if let peak = open.values.map(\.peak).max() { return FootprintEstimate(bytes: peak, source: .settling(workers: open.count)) }
        return nil
    }

    /// The footprints finished for `release`, oldest first.
    public func footprints(release: String) -> [UInt64] { finished[release] ?? [] }

    /// Adds a footprint of `release`.
    private mutating func record(_ footprint: UInt64, release: String) {
        killedUnsettled.remove(release)
        var list = finished[release] ?? []
        list.append(footprint)
        if list.count > keep { list.removeFirst(list.count - keep) }
        finished[release] = list
        releaseOrder.removeAll { $0 == release }
        releaseOrder.append(release)
        if releaseOrder.count > Self.releasesKept {
            finished[releaseOrder.removeFirst()] = nil
        }
    }

    /// The median (the upper one of an even count: the safer side for a memory estimate).
    static func median(_ values: [UInt64]) -> UInt64 {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
}
