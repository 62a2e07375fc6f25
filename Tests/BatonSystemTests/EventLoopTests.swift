@testable import BatonSystem
import BatonTestSupport
import BatonTestTraits
import Glibc
import Testing

/// An EventLoop running on its own pthread, stopped and joined at the end.
private final class RunningLoop: Sendable {
    let loop: EventLoop
    /// Signaled when `run()` returned.
    private let exited: Latch
    /// The loop thread's pthread id.
    let threadID: Protected<pthread_t>
    private let thread: Thread
    private let exitSeen = Protected(false)
    private let joined = Protected(false)

    init(now: (@Sendable () -> Duration)? = nil) throws {
        let loop: EventLoop
        if let now { loop = try EventLoop(now: now) } else { loop = try EventLoop() }
        self.loop = loop
        let started = Latch()
        let exited = Latch()
        let threadID = Protected<pthread_t>(0)
        self.exited = exited
        self.threadID = threadID
        thread = Thread {
            threadID.withLock { $0 = pthread_self() }
            started.signal()
            loop.run()
            exited.signal()
        }
        precondition(started.wait(timeout: .seconds(10)))
    }

    /// Runs `body` on the loop and waits for it (bounded).
    func sync(_ body: @escaping @Sendable () -> Void = {}) -> Bool {
        let done = Latch()
        loop.execute {
            body()
            done.signal()
        }
        return done.wait(timeout: .seconds(10))
    }

    /// Three round trips: everything the loop saw before this call has been handled, the
    /// timers due by then included. An iteration handles the descriptors ready before it runs
    /// its due timers, up to one more batch of them after reading the time: two round trips
    /// could both run in that iteration before its timers (a CI run read `[]` where the timers
    /// ran a moment later); the third runs in the next one.
    func settle() -> Bool { sync() && sync() && sync() }

    /// True once `run()` returned (waits up to `timeout`).
    func hasExited(timeout: Duration) -> Bool {
        if exitSeen.withLock({ $0 }) { return true }
        guard exited.wait(timeout: timeout) else { return false }
        exitSeen.withLock { $0 = true }
        return true
    }

    /// Stops the loop and joins its thread.
    func shutdown() {
        loop.stop()
        guard hasExited(timeout: .seconds(10)) else {
            Issue.record("run() did not return after stop()")
            return
        }
        let first = joined.withLock { j in
            defer { j = true }
            return !j
        }
        if first { thread.join() }
    }
}

@Suite("EventLoop", .serialized, .ownThread)
struct EventLoopTests {
    @Test func executeRunsOnTheLoopThreadInOrder() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let loopThread = running.threadID.withLock { $0 }
        let seen = Protected<[Int: [Int]]>([:])
        let offThread = Protected(0)
        let all = Latch()
        let senders = (0..<4).map { sender in
            Thread {
                for i in 0..<250 {
                    running.loop.execute {
                        if pthread_equal(pthread_self(), loopThread) == 0 { offThread.withLock { $0 += 1 } }
                        seen.withLock { $0[sender, default: []].append(i) }
                        all.signal()
                    }
                }
            }
        }
        for sender in senders { sender.join() }
        #expect(all.wait(count: 1000, timeout: .seconds(20)))
        #expect(offThread.withLock { $0 } == 0)
        let byThread = seen.withLock { $0 }
        for sender in 0..<4 { #expect(byThread[sender] == Array(0..<250)) }
    }

    @Test func offloadRunsWorkOffTheLoopAndCompletesOnIt() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let loopThread = running.threadID.withLock { $0 }
        let release = Latch()
        let workOnLoop = Protected<Bool?>(nil)
        let completionOnLoop = Protected<Bool?>(nil)
        let result = Protected<Int?>(nil)
        let done = Latch()
        #expect(
            running.sync {
                running.loop.offload(
                    { () -> Int in
                        workOnLoop.withLock { $0 = pthread_equal(pthread_self(), loopThread) != 0 }
                        _ = release.wait(timeout: .seconds(10))
                        return 42
                    },
                    completion: { value in
                        completionOnLoop.withLock { $0 = pthread_equal(pthread_self(), loopThread) != 0 }
                        result.withLock { $0 = value }
                        done.signal()
                    })
            })
        // The loop goes on serving while the work is blocked.
        #expect(running.sync())
        #expect(result.withLock { $0 } == nil)
        release.signal()
        #expect(done.wait(timeout: .seconds(10)))
        #expect(workOnLoop.withLock { $0 } == false)
        #expect(completionOnLoop.withLock { $0 } == true)
        #expect(result.withLock { $0 } == 42)
    }

    /// On a fake clock: on the wall clock a stall of 20 ms between two `schedule` calls (seen once
    /// in CI: "c" before "b") makes the later 40 ms timer due after the earlier 60 ms one, as it
    /// should be, and the order the test expects is no longer the deadlines' order.
    @Test func timersFireInDeadlineOrderAndCancelPreventsFiring() throws {
        let clock = Protected<Duration>(.seconds(1000))
        let running = try RunningLoop(now: { clock.withLock { $0 } })
        defer { running.shutdown() }
        let order = Protected<[String]>([])
        let fired = Latch()
        let loop = running.loop
        #expect(
            running.sync {
                func record(_ name: String) -> () -> Void {
                    {
                        order.withLock { $0.append(name) }
                        fired.signal()
                    }
                }
                loop.schedule(after: .milliseconds(60), record("c"))
                loop.schedule(after: .milliseconds(20), record("a"))
                let cancelled = loop.schedule(after: .milliseconds(30), record("cancelled"))
                loop.schedule(after: .milliseconds(40), record("b"))
                loop.schedule(after: .zero, record("now"))
                loop.cancel(cancelled)
                loop.cancel(cancelled)  // harmless twice
            })
        #expect(fired.wait(count: 1, timeout: .seconds(10)))
        #expect(running.settle())
        #expect(order.withLock { $0 } == ["now"])
        for (ms, expected) in [(20, ["now", "a"]), (30, ["now", "a"]), (40, ["now", "a", "b"]), (60, ["now", "a", "b", "c"])] {
            clock.withLock { $0 = .seconds(1000) + .milliseconds(ms) }
            #expect(running.settle())
            #expect(order.withLock { $0 } == expected, "at +\(ms) ms")
        }
        #expect(running.sync { loop.cancel(12345) })  // unknown token: harmless
    }

    @Test func aTimerCancelledByAnEarlierOneInTheSameBatchDoesNotRun() throws {
        let clock = Protected<Duration>(.seconds(1000))
        let running = try RunningLoop(now: { clock.withLock { $0 } })
        defer { running.shutdown() }
        let order = Protected<[String]>([])
        let loop = running.loop
        #expect(
            running.sync {
                var second: EventLoop.Token = 0
                loop.schedule(after: .seconds(1)) {
                    order.withLock { $0.append("first") }
                    loop.cancel(second)
                }
                second = loop.schedule(after: .seconds(2)) { order.withLock { $0.append("second") } }
                loop.schedule(after: .seconds(3)) { order.withLock { $0.append("third") } }
                loop.schedule(after: .seconds(60)) { order.withLock { $0.append("later") } }
            })
        // All three become due at once; the loop runs them by deadline in one batch.
        clock.withLock { $0 = .seconds(1005) }
        #expect(running.settle())
        #expect(order.withLock { $0 } == ["first", "third"])
    }

    @Test func readablePipeCallsItsHandlerUntilUnregistered() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let pipe = try makePipe()
        defer {
            close(pipe.read)
            close(pipe.write)
        }
        let received = Protected<[UInt8]>([])
        let calls = Protected(0)
        let got = Latch()
        let loop = running.loop
        #expect(
            running.sync {
                do throws(SystemError) {
                    try loop.register(fd: pipe.read, events: .readable) { events in
                        calls.withLock { $0 += 1 }
                        var buffer = [UInt8](repeating: 0, count: 64)
                        let n = read(pipe.read, &buffer, 64)
                        if n > 0 { received.withLock { $0 += buffer[0..<n] } }
                        if events.contains(.readable) { got.signal() }
                    }
                } catch {
                    Issue.record("register failed: \(error)")
                }
            })
        writeAll(pipe.write, Array("hello".utf8))
        #expect(got.wait(timeout: .seconds(10)))
        #expect(received.withLock { $0 } == Array("hello".utf8))
        #expect(running.sync { loop.unregister(fd: pipe.read) })
        let before = calls.withLock { $0 }
        writeAll(pipe.write, Array("ignored".utf8))
        #expect(running.settle())
        #expect(calls.withLock { $0 } == before)
        // Still unread: unregistering did not consume anything.
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(read(pipe.read, &buffer, 64) == 7)
    }

    @Test func levelTriggeredAndHangup() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let pipe = try makePipe()
        defer { close(pipe.read) }
        let calls = Protected(0)
        let third = Latch()
        let hangup = Latch()
        let reported = Protected<UInt32>(0)
        let loop = running.loop
        // A handler that does not drain is called again, until it unregisters.
        #expect(
            running.sync {
                try? loop.register(fd: pipe.read, events: .readable) { _ in
                    let n = calls.withLock { c in
                        c += 1
                        return c
                    }
                    if n == 3 {
                        loop.unregister(fd: pipe.read)
                        third.signal()
                    }
                }
            })
        writeAll(pipe.write, [1])
        #expect(third.wait(timeout: .seconds(10)))
        #expect(running.settle())
        #expect(calls.withLock { $0 } == 3)
        // The writer going away is reported as hangup (after the data).
        var one: UInt8 = 0
        #expect(read(pipe.read, &one, 1) == 1)
        #expect(
            running.sync {
                try? loop.register(fd: pipe.read, events: .readable) { events in
                    loop.unregister(fd: pipe.read)
                    reported.withLock { $0 = events.rawValue }
                    hangup.signal()
                }
            })
        close(pipe.write)
        #expect(hangup.wait(timeout: .seconds(10)))
        let events = EventLoop.Events(rawValue: reported.withLock { $0 })
        #expect(!events.isDisjoint(with: .hangup), "events \(events.rawValue)")
    }

    /// epoll reports a pipe whose writer closed (and many socket hangups) as
    /// EPOLLHUP alone (0x10, measured here): `.hangup` must match it by itself,
    /// and EPOLLERR has its own member.
    @Test
    func plainHangupCountsAsHangup() {
        let epollHUP = EventLoop.Events(rawValue: 0x010)
        let epollERR = EventLoop.Events(rawValue: 0x008)
        #expect(epollHUP.contains(.hangup))
        #expect(epollERR.contains(.error))
        #expect(!epollERR.contains(.hangup))
    }

    @Test func modifyChangesTheWatchedEvents() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let pipe = try makePipe()
        defer {
            close(pipe.read)
            close(pipe.write)
        }
        let writable = Latch()
        let calls = Protected(0)
        let loop = running.loop
        #expect(
            running.sync {
                try? loop.register(fd: pipe.write, events: .readable) { events in
                    calls.withLock { $0 += 1 }
                    if events.contains(.writable) {
                        loop.unregister(fd: pipe.write)
                        writable.signal()
                    }
                }
            })
        #expect(running.settle())
        #expect(calls.withLock { $0 } == 0)  // a write end is never readable
        #expect(running.sync { loop.modify(fd: pipe.write, events: .writable) })
        #expect(writable.wait(timeout: .seconds(10)))
    }

    @Test func registerAClosedDescriptorThrows() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let failure = Protected<SystemError?>(nil)
        #expect(
            running.sync {
                do throws(SystemError) {
                    try running.loop.register(fd: 987_654, events: .readable) { _ in }
                } catch {
                    failure.withLock { $0 = error }
                }
            })
        #expect(failure.withLock { $0 }?.errno == EBADF)
    }

    @Test func stopMakesRunReturn() throws {
        // From another thread while idle (no timers, no fds).
        let idle = try RunningLoop()
        idle.loop.stop()
        #expect(idle.hasExited(timeout: .seconds(10)))
        idle.shutdown()
        // From inside a closure on the loop, with a timer pending far away.
        let busy = try RunningLoop()
        #expect(busy.sync { busy.loop.schedule(after: .seconds(3600)) {} })
        busy.loop.execute { busy.loop.stop() }
        #expect(busy.hasExited(timeout: .seconds(10)))
        busy.shutdown()
        // Before run(): run returns at once.
        let early = try EventLoop()
        early.stop()
        let returned = Latch()
        let thread = Thread {
            early.run()
            returned.signal()
        }
        #expect(returned.wait(timeout: .seconds(10)))
        thread.join()
    }

    /// An epoll_wait that fails with anything but EINTR fails again at once:
    /// run() ends with the error recorded instead of spinning.
    @Test func aFailingEpollWaitEndsRunWithTheError() throws {
        let running = try RunningLoop()
        defer { running.shutdown() }
        let loop = running.loop
        // dup2 swaps the epoll descriptor for /dev/null in one step (its number is
        // never free for another thread): the next epoll_wait fails with EINVAL.
        #expect(
            running.sync {
                let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
                dup2(null, loop.epfd)
                close(null)
            })
        #expect(running.hasExited(timeout: .seconds(10)), "run() kept going after epoll_wait failed")
        #expect(loop.failure?.errno == EINVAL)
        #expect(loop.failure?.description.contains("epoll_wait") == true)
    }
}
