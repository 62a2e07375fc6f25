import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension MemoryIntegration {
    /// The recycling engine under real processes: two workers over `worker_limit` at once are
    /// recycled side by side under a budget of 2, one after the other under a budget of 1; the
    /// order is read from baton's own log events, never from the wall clock.
    @Suite("recycling budget")
    struct RecyclingTests {
        static var worker: String { TestPaths.executable("baton-demo-worker") }

        /// One recycle event of baton's log, in the order logged.
        enum Event: Equatable {
            case started(Int)
            case done(Int)
            /// A worker process started in the slot (`worker started`).
            case spawned(Int)
            /// A new worker in the slot passed its stability window.
            case stable(Int)
        }

        static func events(_ lines: [String]) -> [Event] {
            lines.compactMap { line in
                if line.contains("worker started"), let r = line.range(of: "slot=") {
                    return Int(line[r.upperBound...].prefix { $0.isNumber }).map(Event.spawned)
                }
                if line.contains("worker stayed up"), let r = line.range(of: "slot=") {
                    return Int(line[r.upperBound...].prefix { $0.isNumber }).map(Event.stable)
                }
                guard let range = line.range(of: "recycle of slot ") else { return nil }
                let rest = line[range.upperBound...]
                guard let slot = Int(rest.prefix { $0.isNumber }) else { return nil }
                if rest.contains(" started (") { return .started(slot) }
                if rest.contains(" done") { return .done(slot) }
                return nil
            }
        }

        /// Two workers of 20 MiB against a 10 MiB `worker_limit`: both are over it at the first
        /// check after `min_worker_age`; waits until both slots' recycles are done and returns the
        /// events (0 failed requests checked).
        func recycleTwo(concurrency: Int, spacing: String, tag: String, window: String? = nil) throws -> [Event] {
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--hold", "20", "--boot-delay", "1"],
                sections: BatonHarness.defaultSections + """

                    [memory]
                    worker_limit = "10MiB"
                    check_interval = "300ms"
                    smaps_every = 1
                    min_worker_age = "3s"
                    [rolling]
                    recycle_concurrency = \(concurrency)
                    recycle_spacing = "\(spacing)"
                    """ + (window.map { "\n[deploy]\nstability_window = \"\($0)\"" } ?? ""), tag: tag)
            defer { baton.stop() }
            let load = LoadClient(port: baton.port, connections: 4, maxDuration: .seconds(90))
            var events: [Event] = []
            let both = baton.process.waitForLine(timeout: .seconds(60)) { _ in
                events = Self.events(baton.process.stderrLines)
                return events.contains(.done(0)) && events.contains(.done(1))
            }
            #expect(load.waitForProgress(100))
            let report = load.stop()
            #expect(both != nil, "\(baton.process.stderrLines.suffix(30))")
            #expect(report.failed == 0, "\(report)")
            #expect(baton.process.waitForLine(timeout: .seconds(10)) { $0.contains("reason=worker-limit") } != nil)
            return events
        }

        @Test("budget 2: two workers over worker_limit are recycled at once, 0 failed requests")
        func concurrentUnderABudgetOfTwo() throws {
            let events = try recycleTwo(concurrency: 2, spacing: "0s", tag: "rc2")
            // Both started before either was done.
            let firstDone = events.firstIndex { if case .done = $0 { true } else { false } }
            #expect(firstDone != nil)
            let before = events[..<(firstDone ?? events.endIndex)]
            #expect(before.contains(.started(0)) && before.contains(.started(1)), "\(events)")
            // And both new workers were running side by side: each slot's replacement started
            // after the first recycle started and before the first was done.
            let firstStart = events.firstIndex { if case .started = $0 { true } else { false } } ?? 0
            let spawned = events[firstStart..<(firstDone ?? events.endIndex)]
            #expect(spawned.contains(.spawned(0)) && spawned.contains(.spawned(1)), "\(events)")
        }

        @Test("budget 1: two workers over worker_limit are recycled one after the other, 0 failed requests")
        func oneAfterTheOtherUnderABudgetOfOne() throws {
            let events = try recycleTwo(concurrency: 1, spacing: "1s", tag: "rc1")
            // Never two at once: every start follows the end of the one before.
            var running: Set<Int> = []
            for event in events {
                switch event {
                case .started(let slot):
                    #expect(running.isEmpty, "\(events)")
                    running.insert(slot)
                case .done(let slot):
                    running.remove(slot)
                case .spawned, .stable:
                    break
                }
            }
            let starts = events.compactMap { if case .started(let s) = $0 { s } else { nil } }
            #expect(Set(starts.prefix(2)) == [0, 1], "\(events)")
        }

        @Test("budget 1: the policy looks again as soon as a recycle is done, not at the next check")
        func nextOrderedWhenOneIsDone() throws {
            // Two workers of 20 MiB against a 10 MiB worker_limit, checked every 5 s: both are
            // eligible at the check at about 10 s, which orders slot 0's recycle. Its new worker
            // serves about a second later and stays in its 2 s stability window until about 13 s;
            // the next check is at 15 s. The end of the recycle is a check of its own, so slot 1's
            // recycle starts before the first new worker's window passed.
            let baton = try BatonHarness(
                workers: 2, command: [Self.worker, "--hold", "20"],
                sections: BatonHarness.defaultSections + """

                    [memory]
                    worker_limit = "10MiB"
                    check_interval = "5s"
                    smaps_every = 1
                    min_worker_age = "1s"
                    [rolling]
                    recycle_concurrency = 1
                    recycle_spacing = "0s"
                    [deploy]
                    stability_window = "2s"
                    """, tag: "rcd")
            defer { baton.stop() }
            var events: [Event] = []
            let seen = baton.process.waitForLine(timeout: .seconds(60)) { _ in
                events = Self.events(baton.process.stderrLines)
                return events.filter { if case .started = $0 { true } else { false } }.count >= 2
            }
            #expect(seen != nil, "\(baton.process.stderrLines.suffix(30))")
            let starts = events.enumerated().compactMap { i, e in if case .started(let s) = e { (i, s) } else { nil } }
            guard let first = starts.first else {
                Issue.record("no recycle started: \(events)")
                return
            }
            let firstStable = events.indices.first { $0 > first.0 && events[$0] == .stable(first.1) }
            #expect(starts.count >= 2 && starts[1].1 != first.1, "\(events)")
            #expect(
                starts.count >= 2 && firstStable.map { starts[1].0 < $0 } ?? true,
                "the second recycle waited for the next periodic check: \(events)")
        }

        @Test("budget 1: the next recycle starts once the first one's new worker serves, inside its stability window")
        func nextStartsInsideTheWindow() throws {
            let events = try recycleTwo(concurrency: 1, spacing: "0s", tag: "rcw", window: "3s")
            let starts = events.enumerated().compactMap { i, e in if case .started(let s) = e { (i, s) } else { nil } }
            #expect(starts.count >= 2, "\(events)")
            guard starts.count >= 2 else { return }
            let (first, second) = (starts[0], starts[1])
            // The first recycle's new worker passes its 3 s window only after the second started.
            let firstStable = events.indices.first { $0 > first.0 && events[$0] == .stable(first.1) }
            #expect(second.1 != first.1, "\(events)")
            #expect(firstStable.map { second.0 < $0 } ?? true, "the second recycle waited for the first one's window: \(events)")
        }
    }
}
