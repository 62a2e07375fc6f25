import BatonCore
@testable import BatonDaemon
import BatonSystem
import CBatonLinux
import Glibc
import Testing

/// The memory monitor's decisions on made-up readings: no process, no /proc, no loop.
@Suite struct MemoryMonitorTests {
    static let mib: UInt64 = 1 << 20

    static func sample(rss: UInt64, uss: UInt64) -> MemorySample {
        MemorySample(rss: rss * mib, pss: uss * mib, uss: uss * mib, shared: 0)
    }

    static func monitor() -> MemoryMonitor {
        let config = BatonConfig.make(app: AppConfig(name: "t", command: ["/w"], directory: "/r", workers: 1))
        return MemoryMonitor(policy: RestartPolicy(settings: .init(config: config, hostname: "h")))
    }

    /// A worker with no process behind it (its pidfd an eventfd, closed with it).
    static func worker(pid: pid_t, state: Worker.State) -> Worker {
        let w = Worker(
            slot: 0, generation: 1, process: ChildProcess(pid: pid, pidfd: OwnedDescriptor(CBatonLinux_eventfd())),
            spec: WorkerSpec(argv: ["/w"], directory: "/r", variables: [], credentials: nil), startedAt: .zero, startedAtWall: 0)
        w.state = state
        return w
    }

    @Test("every smaps_every-th tick is detailed; a tick while a read runs is skipped and not counted")
    func tickCadence() {
        let m = Self.monitor()
        #expect(m.nextTick(smapsEvery: 3) == false)
        #expect(m.nextTick(smapsEvery: 3) == false)
        m.readStarted()
        #expect(m.nextTick(smapsEvery: 3) == nil)
        m.readFinished()
        #expect(m.nextTick(smapsEvery: 3) == true)
        #expect(m.ticks == 3)
        // smaps_every = 0 counts as 1: every tick detailed.
        #expect(Self.monitor().nextTick(smapsEvery: 0) == true)
    }

    @Test("a statm reading keeps the last PSS/USS; only a ready worker's detailed readings are growth")
    func applyKeepsDetailedFigures() {
        let m = Self.monitor()
        let booting = Self.worker(pid: 1_000_001, state: .starting)
        let ready = Self.worker(pid: 1_000_002, state: .ready)
        let gone = Self.worker(pid: 1_000_003, state: .exited)
        let workers = [booting, ready, gone]
        let detailed = [booting.pid: Self.sample(rss: 20, uss: 10), ready.pid: Self.sample(rss: 20, uss: 10), gone.pid: Self.sample(rss: 1, uss: 1)]
        m.apply(detailed, detailed: true, to: workers, now: .seconds(1))
        #expect(booting.memory?.uss == 10 * Self.mib)
        #expect(booting.history.count == 0 && booting.ussAtReady == nil)
        #expect(ready.ussAtReady == 10 * Self.mib && ready.history.count == 1)
        #expect(gone.memory == nil)
        // statm only: RSS moves, PSS/USS stay from the detailed reading; no history point.
        let statm = MemorySample(rss: 40 * Self.mib, pss: nil, uss: nil, shared: nil)
        m.apply([ready.pid: statm], detailed: false, to: workers, now: .seconds(2))
        #expect(ready.memory?.rss == 40 * Self.mib)
        #expect(ready.memory?.uss == 10 * Self.mib)
        #expect(ready.history.count == 1)
        // A later detailed reading adds a point; the baseline stays the first one.
        m.apply([ready.pid: Self.sample(rss: 40, uss: 30)], detailed: true, to: workers, now: .seconds(3))
        #expect(ready.history.count == 2 && ready.ussAtReady == 10 * Self.mib)
    }

    @Test("the reservation's PSS is carried forward by RSS growth since that PSS was first seen")
    func carriedForwardPSS() {
        let m = Self.monitor()
        #expect(m.carriedForwardPSS([(pid: 7, pss: 100, rss: 200), (pid: 8, pss: 50, rss: 80)]) == 150)
        // RSS grew by 30 for pid 7: PSS counts it; pid 8 shrank: no negative growth.
        #expect(m.carriedForwardPSS([(pid: 7, pss: 100, rss: 230), (pid: 8, pss: 50, rss: 70)]) == 180)
        // A new PSS (a detailed read) is a new baseline at the RSS read with it.
        #expect(m.carriedForwardPSS([(pid: 7, pss: 140, rss: 230)]) == 140)
        #expect(m.carriedForwardPSS([(pid: 7, pss: 140, rss: 240)]) == 150)
    }

    @Test("holding, sampling, rolling and releasing a reservation; the measured replacement time outlives it")
    func reservationLifecycle() {
        let m = Self.monitor()
        #expect(m.reservedBytes == 0)
        #expect(m.reservationSampled(at: .zero, available: 0, workers: 0, fittedRate: 0, replacementTime: .seconds(1)) == nil)
        m.hold(Reservation(bytes: 100 * Self.mib, margin: 10 * Self.mib, now: .zero, hold: .seconds(60)), replacementTime: nil)
        #expect(m.reservedBytes == 110 * Self.mib)
        let plenty = m.reservationSampled(
            at: .seconds(1), available: Int64(500 * Self.mib), workers: 400 * Self.mib, fittedRate: 0, replacementTime: .seconds(1))
        #expect(plenty?.roll == false)
        // The workers grew 450 MiB.
        let short = m.reservationSampled(
            at: .seconds(2), available: Int64(50 * Self.mib), workers: 850 * Self.mib, fittedRate: 0, replacementTime: .seconds(1))
        #expect(short?.roll == true && short?.tooling == 0)
        #expect(m.reservationReport(now: .seconds(2))?.headroomBytes == Int64(50 * Self.mib))
        #expect(m.reservationReport(now: .seconds(2))?.triggerBytes == short?.trigger)
        #expect(m.warnNoRoll(.nothingGrown) && !m.warnNoRoll(.nothingGrown), "warned once")
        #expect(m.warnNoRoll(.cannotClose) && !m.warnNoRoll(.nothingGrown), "once per reason")
        m.reservationRolled(took: .seconds(4))
        #expect(m.heldReservation?.rolls == 1)
        #expect(m.warnNoRoll(.nothingGrown), "a roll re-arms the warning")
        #expect(m.resetReservation() == nil, "no timer was scheduled")
        #expect(m.heldReservation == nil && m.reservedBytes == 0)
        #expect(m.measuredReplacementTime == .seconds(4))
    }

    /// A headline audit: `preflight --need 250MiB --roll-ahead --hold 2m`, then the CI build
    /// allocated its 250 MiB: baton rolled 6 workers in 14 s (some twice, +4 KiB since ready),
    /// the build's allocation read as a shortage and as a fall of the headroom (triggers over
    /// 900 MiB on a 400 MiB host). What the tooling takes of its reservation is neither; the
    /// workers' growth still is.
    @Test("the tooling spending its reservation rolls nothing; the workers growing into it still do")
    func toolingSpendsItsReservation() {
        let m = Self.monitor()
        m.hold(Reservation(bytes: 250 * Self.mib, margin: 16 * Self.mib, now: .zero, hold: .seconds(120)), replacementTime: nil)
        let workers = 160 * Self.mib
        var available = Int64(333 * Self.mib)
        var at = Duration.zero
        func sample(_ grown: UInt64 = 0) -> (trigger: UInt64, tooling: UInt64, roll: Bool)? {
            at += .milliseconds(250)
            return m.reservationSampled(at: at, available: available, workers: workers + grown, fittedRate: 0, replacementTime: .seconds(3))
        }
        #expect(sample()?.roll == false)
        // The build takes its 250 MiB over 2 s.
        for _ in 0..<8 {
            available -= Int64(250 * Self.mib / 8)
            let s = sample()
            #expect(s?.roll == false, "rolled for the tooling's own memory: \(String(describing: s))")
        }
        let spent = sample()
        #expect(spent?.tooling == 250 * Self.mib)
        #expect(m.reservationReport(now: at)?.headroomBytes == Int64(83 * Self.mib))
        #expect(spent.map { $0.trigger < 83 * Self.mib } == true, "the trigger is of the headroom as it is: \(String(describing: spent))")
        // Then the workers grow 80 MiB into what is left: that is a shortage.
        available -= Int64(80 * Self.mib)
        #expect(sample(80 * Self.mib)?.roll == true)
        // A build that takes more than it reserved: the rest counts.
        let m2 = Self.monitor()
        m2.hold(Reservation(bytes: 100 * Self.mib, margin: 16 * Self.mib, now: .zero, hold: .seconds(120)), replacementTime: nil)
        _ = m2.reservationSampled(at: .zero, available: Int64(300 * Self.mib), workers: workers, fittedRate: 0, replacementTime: .seconds(3))
        let over = m2.reservationSampled(at: .seconds(1), available: Int64(90 * Self.mib), workers: workers, fittedRate: 0, replacementTime: .seconds(3))
        #expect(over?.tooling == 100 * Self.mib && over?.roll == true)
    }

    @Test("the kernel's refusal of merging is noted once and reported with ksmd's state")
    func mergeNotes() {
        let m = Self.monitor()
        #expect(m.mergeNotes(run: "1\n").isEmpty)
        #expect(m.mergeRefused("refused"))
        #expect(!m.mergeRefused("refused again"))
        #expect(m.mergeNotes(run: "1\n") == ["refused"])
        #expect(m.mergeNotes(run: "0\n").count == 2, "ksmd off adds its note")
    }
}
