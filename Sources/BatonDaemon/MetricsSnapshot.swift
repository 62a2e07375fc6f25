import BatonCore
import BatonSystem

/// What one scrape of the metrics endpoint exports: values copied from the supervisor on the
/// loop, at the moment of the scrape, so the metrics server renders a value and never reads
/// the supervisor's slots, workers or counters itself.
struct MetricsSnapshot: Sendable, Equatable {
    /// One live worker of a slot (serving, starting or draining).
    struct LiveWorker: Sendable, Equatable {
        /// Its pid.
        var pid: Int32
        /// The release folder it runs.
        var release: String
        /// When it was started, seconds since the epoch.
        var startedAtWall: Double
    }

    /// A slot's serving worker.
    struct Serving: Sendable, Equatable {
        /// Its pid.
        var pid: Int32
        /// Its tree's last memory figures, if measured.
        var memory: MemorySample?
        /// Requests it reported serving (`X_BATON_REQUESTS=`), if it did.
        var requests: Int?
        /// Its fitted USS growth, MiB per hour, once there is one.
        var leakMiBPerHour: Double?
    }

    /// One slot.
    struct Slot: Sendable, Equatable {
        /// Slot 0..N-1.
        var index: Int
        /// Whether its serving worker is ready.
        var ready: Bool
        /// Its live workers.
        var live: [LiveWorker]
        /// Its serving worker, if it has one.
        var serving: Serving?
        /// Whether it keeps failing to start (`crash_loop` in status).
        var crashLooping = false
    }

    /// The memory headroom under the binding limit.
    struct Headroom: Sendable, Equatable {
        /// The binding limit's name.
        var binding: String
        /// Bytes left under it.
        var availableBytes: Int64
    }

    /// Mold mode's figures.
    struct Mold: Sendable, Equatable {
        /// Whether the current release's mold is ready.
        var up: Bool
        /// Molds that died and were started again since baton started.
        var restarts: Int
    }

    /// Every slot, by index.
    var slots: [Slot]
    /// Restarts by reason since baton started.
    var restartsByReason: [RestartReason: Int]
    /// Deploys by outcome since baton started.
    var deploysByOutcome: [OperationOutcome: Int]
    /// Kernel OOM kills by slot, and in all of baton's cgroup.
    var oomKillsBySlot: [Int: Int]
    /// See `oomKillsBySlot`.
    var oomKillsTotal: Int
    /// The headroom from the last sample; nil when there is none yet.
    var headroom: Headroom?
    /// The reservation `preflight --roll-ahead` holds, if any.
    var reservation: ReservationReport?
    /// Bytes of baton's own log dropped since it started.
    var logDroppedBytes: UInt64
    /// Mold mode's figures; nil in exec mode.
    var mold: Mold? = nil
    /// Whether a rollback failed and slots run a mix of releases (`degraded` in status).
    var degraded = false

    /// Slots whose serving worker is ready.
    var readyCount: Int { slots.filter(\.ready).count }
}

/// What the metrics server asks of the daemon: a snapshot per scrape, made on the loop.
protocol MetricsSource: AnyObject {
    /// The values of a scrape now.
    func metricsSnapshot() -> MetricsSnapshot
    /// Why a scrape just accepted is closed for want of descriptors (nil: there is room).
    func clientDescriptorShortage() -> String?
}

extension Supervisor: MetricsSource {
    func metricsSnapshot() -> MetricsSnapshot {
        let headroom = (try? preflight(release: nil, need: 0)).map { verdict, _ in
            MetricsSnapshot.Headroom(binding: verdict.binding.kind.name, availableBytes: verdict.binding.available)
        }
        return MetricsSnapshot(
            slots: slots.map { slot in
                MetricsSnapshot.Slot(
                    index: slot.index, ready: slot.current?.state == .ready,
                    live: slot.workers.map { .init(pid: $0.pid, release: $0.spec.release, startedAtWall: wallTime(of: $0.startedAt)) },
                    serving: slot.current.map {
                        .init(pid: $0.pid, memory: $0.memory, requests: $0.requestsServed, leakMiBPerHour: $0.history.leakRate?.mibPerHour)
                    }, crashLooping: slot.isCrashLooping)
            },
            restartsByReason: restartsByReason, deploysByOutcome: deploysByOutcome, oomKillsBySlot: memoryMonitor.oom.tracker.bySlot,
            oomKillsTotal: memoryMonitor.oom.tracker.total, headroom: headroom, reservation: reservationReport(),
            logDroppedBytes: LogWriter.standardError.droppedBytes,
            mold: moldMode
                ? .init(up: moldBook.molds.contains { $0.state == .ready && $0.spec == slots.first?.spec }, restarts: moldBook.restarts) : nil,
            degraded: degraded)
    }
}
