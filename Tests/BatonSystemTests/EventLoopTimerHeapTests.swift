import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// The loop's timer heap and its thread contract, on a manual clock: timers run
/// earliest deadline first (ties in scheduling order), cancelled ones never run,
/// and cancelled entries do not pile up.
@Suite struct EventLoopTimerHeapTests {
    /// A clock the test moves by hand.
    private final class ManualClock: Sendable {
        let value = Protected<Duration>(.seconds(1000))
        var now: @Sendable () -> Duration { { [value] in value.withLock { $0 } } }
    }

    @Test func timersRunInDeadlineThenSchedulingOrderAndCancelledOnesNever() throws {
        let clock = ManualClock()
        let loop = try EventLoop(now: clock.now)
        let ran = Protected<[Int]>([])
        // A deterministic shuffle of deadlines with ties, scheduled before run().
        var rng = UInt64(0x9E37_79B9_7F4A_7C15)
        var expected: [(deadline: Int, index: Int)] = []
        var tokens: [EventLoop.Token] = []
        for index in 0..<300 {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let deadline = Int((rng >> 33) % 50)
            tokens.append(loop.schedule(after: .milliseconds(deadline)) { ran.withLock { $0.append(index) } })
            expected.append((deadline, index))
        }
        var cancelled = Set<Int>()
        for index in stride(from: 0, to: 300, by: 3) {
            loop.cancel(tokens[index])
            cancelled.insert(index)
        }
        loop.cancel(tokens[0])  // twice: harmless
        #expect(loop.pendingTimerCount == 200)
        loop.schedule(after: .milliseconds(60)) { loop.stop() }
        clock.value.withLock { $0 += .seconds(1) }
        let thread = Thread { loop.run() }
        thread.join()
        let order = expected.filter { !cancelled.contains($0.index) }
            .sorted { ($0.deadline, $0.index) < ($1.deadline, $1.index) }.map(\.index)
        #expect(ran.withLock { $0 } == order)
    }

    @Test func cancellingMostTimersShrinksTheHeap() throws {
        let loop = try EventLoop(now: ManualClock().now)
        var tokens: [EventLoop.Token] = []
        for i in 0..<10_000 { tokens.append(loop.schedule(after: .seconds(3600 + i)) {}) }
        for token in tokens.dropLast(10) { loop.cancel(token) }
        #expect(loop.pendingTimerCount == 10)
    }

    @Test func aTimerScheduledByATimerRunsInALaterIterationNotTheSameBatch() throws {
        let clock = ManualClock()
        let loop = try EventLoop(now: clock.now)
        let log = Protected<[String]>([])
        let (readFD, writeFD) = try pipePair()
        defer {
            close(readFD)
            close(writeFD)
        }
        // A timer that re-arms itself with zero delay: descriptors still get served.
        func rearm(_ n: Int) {
            log.withLock { $0.append("timer") }
            if n > 0 { loop.schedule(after: .zero) { rearm(n - 1) } }
        }
        try loop.register(fd: readFD, events: .readable) { _ in
            var byte: UInt8 = 0
            _ = read(readFD, &byte, 1)
            log.withLock { $0.append("fd") }
            loop.stop()
        }
        loop.schedule(after: .zero) { rearm(1000) }
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
        let thread = Thread { loop.run() }
        thread.join()
        let seen = log.withLock { $0 }
        #expect(seen.contains("fd"))
        #expect(seen.count < 1000)
    }

    @Test func loopOnlyCallsOffTheLoopThreadTrapWhileItRuns() async {
        await #expect(processExitsWith: .failure) {
            let loop = try! EventLoop()
            let running = Latch()
            loop.execute { running.signal() }
            let thread = Thread { loop.run() }
            _ = running.wait(timeout: .seconds(10))
            // Not the loop thread: a debug build traps here.
            loop.schedule(after: .seconds(1)) {}
            loop.stop()
            thread.join()
            exit(0)
        }
    }

    private func pipePair() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SystemError("pipe") }
        return (fds[0], fds[1])
    }

    /// A stall audit: baton stopped (SIGSTOP, or starved of CPU) while it handled a descriptor;
    /// meanwhile a worker sent READY=1 and its readiness timeout passed. The timeout fired before
    /// the loop looked at the worker's notify socket again: a good release was rolled back (3 of
    /// 7 deploys). Descriptors ready by the time a timer is run for are handled first.
    @Test func aTimerDueAfterAStallRunsOnlyOnceTheDescriptorsReadyBeforeItAreHandled() throws {
        let clock = ManualClock()
        let loop = try EventLoop(now: clock.now)
        let handled = try makePipe()
        let notify = try makePipe()
        defer { for fd in [handled.read, handled.write, notify.read, notify.write] { close(fd) } }
        var order: [String] = []
        var timeout: EventLoop.Token = 0
        timeout = loop.schedule(after: .seconds(10)) { order.append("readiness timeout") }
        try loop.register(fd: notify.read, events: .readable) { _ in
            var byte: UInt8 = 0
            _ = read(notify.read, &byte, 1)
            order.append("READY=1")
            loop.cancel(timeout)
        }
        try loop.register(fd: handled.read, events: .readable) { _ in
            var byte: UInt8 = 0
            _ = read(handled.read, &byte, 1)
            // The loop stalls here for longer than the timeout, and the worker's READY=1 arrives.
            var ready: UInt8 = 1
            _ = write(notify.write, &ready, 1)
            clock.value.withLock { $0 += .seconds(15) }
        }
        var byte: UInt8 = 1
        _ = write(handled.write, &byte, 1)
        #expect(loop.pump() != nil)
        #expect(order == ["READY=1"])
        #expect(loop.pump() == 0, "nothing else is due")
        #expect(order == ["READY=1"])
    }
}

/// The bounded pool behind `EventLoop.offload`.
@Suite struct OffloadPoolTests {
    @Test func neverMakesMoreThreadsThanItsBoundAndRunsEveryJob() {
        let pool = OffloadPool(maxThreads: 2)
        let gate = Latch()
        let done = Latch()
        for _ in 0..<8 {
            pool.submit {
                _ = gate.wait(timeout: .seconds(10))
                gate.signal()  // pass it on: one open gate for every job
                done.signal()
            }
        }
        #expect(pool.threadCount == 2)
        gate.signal()
        for _ in 0..<8 { #expect(done.wait(timeout: .seconds(10))) }
        #expect(pool.threadCount == 2)
    }

    @Test func jobsQueuedBehindABusyThreadRunInOrder() {
        let pool = OffloadPool(maxThreads: 1)
        let order = Protected<[Int]>([])
        let done = Latch()
        for i in 0..<50 {
            pool.submit {
                order.withLock { $0.append(i) }
                done.signal()
            }
        }
        for _ in 0..<50 { #expect(done.wait(timeout: .seconds(10))) }
        #expect(order.withLock { $0 } == Array(0..<50))
        #expect(pool.threadCount == 1)
    }

}
