/// An estimate of the memory one new worker takes, and where it comes from.
public struct FootprintEstimate: Sendable, Equatable, Codable {
    /// Where the figure comes from.
    public enum Source: Sendable, Equatable, Codable {
        /// The median of this many recently started workers of the release.
        case measured(workers: Int)
        /// `deploy.worker_footprint`.
        case configured
        /// The median of this many recently started workers of another release (the release
        /// has none measured yet and nothing is configured).
        case otherRelease(workers: Int)
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

/// Learns what a new worker costs: its PSS when it became ready plus its early growth (the
/// largest PSS seen within `window` after ready: caches warm up, the first requests allocate).
///
/// Each boot is finished once a sample arrives after the window (or the worker exits), and
/// the last `keep` finished boots per release are kept. The estimate is their median, so one
/// odd boot (a worker that happened to serve a huge request) does not move it.
public struct FootprintTracker: Sendable, Equatable {
    /// How long after ready growth still counts as the boot's.
    public let window: Duration
    /// Finished boots kept per release.
    public let keep: Int
    /// Boots still in their window, by pid.
    private var open: [Int32: OpenBoot] = [:]
    /// Finished footprints per release, oldest first.
    private var finished: [String: [UInt64]] = [:]
    /// Releases by when a boot of theirs last finished, most recent last (at most
    /// ``releasesKept``; the last one feeds ``FootprintEstimate/Source/otherRelease(workers:)``).
    private var releaseOrder: [String] = []

    /// Releases whose footprints are remembered.
    public static let releasesKept = 8

    /// A boot inside its window.
    private struct OpenBoot: Sendable, Equatable {
        var release: String
        var readyAt: Duration
        var peak: UInt64
    }

    /// Creates a tracker (defaults: growth within 2 minutes of ready, the last 5 boots).
    public init(window: Duration = .seconds(120), keep: Int = 5) {
        self.window = window
        self.keep = max(1, keep)
    }

    /// A worker became ready with `pss` (its tree's PSS) at `now`.
    public mutating func workerReady(pid: Int32, release: String, pss: UInt64, now: Duration) {
        open[pid] = OpenBoot(release: release, readyAt: now, peak: pss)
    }

    /// A PSS sample of a worker; finishes its boot when the window has passed.
    public mutating func sampled(pid: Int32, pss: UInt64, now: Duration) {
        guard var boot = open[pid] else { return }
        if now - boot.readyAt <= window {
            boot.peak = max(boot.peak, pss)
            open[pid] = boot
        } else {
            finish(pid)
        }
    }

    /// A worker exited (or was replaced): its boot finishes with what was seen.
    public mutating func workerExited(pid: Int32) {
        finish(pid)
    }

    /// The footprint for a new worker of `release`: measured boots of that release, else
    /// `configured`, else boots of the release measured last, else nil.
    public func estimate(release: String, configured: UInt64?) -> FootprintEstimate? {
        if let own = finished[release], !own.isEmpty {
            return FootprintEstimate(bytes: Self.median(own), source: .measured(workers: own.count))
        }
        if let configured { return FootprintEstimate(bytes: configured, source: .configured) }
        if let last = releaseOrder.last, let other = finished[last], !other.isEmpty {
            return FootprintEstimate(bytes: Self.median(other), source: .otherRelease(workers: other.count))
        }
        return nil
    }

    /// The footprints finished for `release`, oldest first.
    public func footprints(release: String) -> [UInt64] { finished[release] ?? [] }

    /// Moves an open boot to the finished ones.
    private mutating func finish(_ pid: Int32) {
        guard let boot = open.removeValue(forKey: pid) else { return }
        var list = finished[boot.release] ?? []
        list.append(boot.peak)
        if list.count > keep { list.removeFirst(list.count - keep) }
        finished[boot.release] = list
        releaseOrder.removeAll { $0 == boot.release }
        releaseOrder.append(boot.release)
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
