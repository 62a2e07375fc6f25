import BatonCore

/// One worker's memory readings: its last sample, its USS baseline and the USS history its
/// leak rate is fitted on. Written only through ``MemoryMonitor`` (the periodic samples) and
/// the footprint sampling's baseline reset, so the rules of what counts as growth live here.
struct WorkerMemory {
    /// Latest memory of the tree (PSS/USS from the last detailed sample).
    private(set) var sample: MemorySample?
    /// USS when the worker became ready, or when its tree settled, or the lowest reading since
    /// (growth since boot = now − this). The lowest: a tree whose private memory falls after
    /// ready grows from there (a preloading master at READY=1 whose worker, forked next, shares
    /// the app's pages with it: gunicorn `--preload -w 1`; under a steady leak that tree never
    /// settles, and growth counted from the lone master hid ~60 MiB of it from the memory rules).
    private(set) var ussAtReady: UInt64?
    /// USS samples for the leak rate.
    private(set) var history = MemoryHistory()
    /// The tree's RSS at the last detailed reading (``projected``).
    private var rssAtDetailed: UInt64?
    /// The tree's pids at the last footprint sample, and its USS when that set of pids was
    /// first seen: the settled baseline (``settled(pids:uss:at:)``).
    private var treeSince: (pids: Set<Int32>, uss: UInt64)?

    /// Stores a periodic reading. A statm-only (`detailed: false`) reading keeps the last
    /// PSS/USS/shared/KSM figures; only a detailed reading of a `ready` worker is growth (a
    /// booting worker's readings are not a leak).
    mutating func record(_ reading: MemorySample, detailed: Bool, ready: Bool, at now: Duration) {
        var m = reading
        if !detailed, let previous = sample {
            m.pss = previous.pss
            m.uss = previous.uss
            m.shared = previous.shared
            m.ksm = previous.ksm
        }
        sample = m
        if detailed { rssAtDetailed = m.rss }
        if detailed, let uss = m.uss, ready {
            history.append(MemoryPoint(at: now, bytes: uss))
            if ussAtReady.map({ uss < $0 }) ?? true { ussAtReady = uss }
        }
    }

    /// The last sample with its PSS and USS raised by the tree's RSS growth since they were
    /// read: what the memory rules look at on a check without a detailed read, to read now when
    /// a line may have been crossed (they decide only on a detailed read). An apps audit: a
    /// worker leaking 100 MB/s was replaced at the next detailed read, 6 checks later, at 100 %
    /// of the budget where the line was 90 %.
    var projected: MemorySample? {
        guard var m = sample, let base = rssAtDetailed, m.rss > base else { return sample }
        let growth = m.rss - base
        m.pss = m.pss.map { $0 + growth }
        m.uss = m.uss.map { $0 + growth }
        return m
    }

    /// The reading taken when the worker became ready (of a tree of `pids`): its first
    /// baseline and history point.
    mutating func becameReady(_ reading: MemorySample, pids: Set<Int32>, at now: Duration) {
        sample = reading
        rssAtDetailed = reading.rss
        guard let uss = reading.uss else { return }
        ussAtReady = uss
        treeSince = (pids, uss)
        history.append(MemoryPoint(at: now, bytes: uss))
    }

    /// A footprint sample of the settling tree: a new set of pids (a fork, an exit) starts a
    /// new baseline candidate.
    mutating func footprintSampled(pids: Set<Int32>, uss: UInt64?) {
        guard let uss, treeSince?.pids != pids else { return }
        treeSince = (pids, uss)
    }

    /// What a previous image of baton measured (`baton upgrade`): the baseline and samples.
    mutating func resume(ussAtReady: UInt64?, history points: [MemoryPoint]) {
        self.ussAtReady = ussAtReady
        for point in points { history.append(point) }
    }

    /// The tree settled (a forking server's workers exist now): growth and the leak-rate
    /// history count from the tree as it was when its pids were first what they are now, not
    /// from the lone master at ready, nor from the tree at the sample that settled it: a
    /// worker leaking under load settles too (its samples agree within the tolerance), and
    /// counted from there its leak since ready was forgotten (a memory audit: baselines of
    /// 87 to 93 MiB where the workers had started at 0.1 to 22 MiB, and a roll-ahead refused
    /// as freeing too little that freed 395 MiB).
    mutating func settled(uss: UInt64, at now: Duration) {
        ussAtReady = min(uss, treeSince?.uss ?? uss)
        history = MemoryHistory()
        history.append(MemoryPoint(at: now, bytes: uss))
    }
}
