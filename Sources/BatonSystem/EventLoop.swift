import CBatonLinux
import Glibc
import HeapModule
import Synchronization

/// A single-threaded epoll loop. Every descriptor baton owns is non-blocking
/// and driven from here, and so is every timer: nothing the supervisor does
/// blocks a thread of the Swift cooperative pool (two threads on these
/// machines), and the watchdog timer cannot be starved by it.
///
/// Thread-safety: everything except `execute(_:)` and `stop()` must be called
/// on the loop's own thread (from a handler, a timer or an executed closure),
/// or before `run()` starts. Loop-only calls check it with `assertInEventLoop()`
/// (a precondition in debug builds, like NIO's event loops).
///
/// Timers live in a min-heap ordered by deadline (then by the order they were
/// scheduled); a cancelled timer is dropped lazily when it reaches the top, and
/// the heap is rebuilt when cancelled entries outnumber live ones.
public final class EventLoop: @unchecked Sendable {
    // @unchecked: the mutable state below is touched only on the loop thread;
    // the only cross-thread entry points are `execute` (a Mutex-guarded queue
    // plus an eventfd write) and `stop` (the same queue).

    /// Identifies a registration or a timer.
    public typealias Token = UInt64

    /// Events for `register`.
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Readable (EPOLLIN).
        public static let readable = Events(rawValue: 0x001)
        /// Writable (EPOLLOUT).
        public static let writable = Events(rawValue: 0x004)
        /// Peer hung up (EPOLLHUP; always reported by epoll).
        public static let hangup = Events(rawValue: 0x010)
        /// Error condition (EPOLLERR; always reported by epoll).
        public static let error = Events(rawValue: 0x008)
    }

    /// A timer's place in the heap: earliest deadline first, then scheduling order.
    private struct TimerEntry: Comparable {
        var deadline: Duration
        var token: Token
        static func < (a: TimerEntry, b: TimerEntry) -> Bool {
            (a.deadline, a.token) < (b.deadline, b.token)
        }
    }

    /// The epoll descriptor.
    let epfd: Int32
    /// An eventfd that wakes the loop for `execute`.
    private let wakeFD: Int32
    /// Handlers by token.
    private var handlers: [Token: (Events) -> Void] = [:]
    /// Registration token by fd, to modify or remove a registration.
    private var tokensByFD: [Int32: Token] = [:]
    /// Pending timers' bodies by token (a cancelled timer has none).
    private var timerBodies: [Token: () -> Void] = [:]
    /// Deadlines of pending timers, cancelled ones included until they surface.
    private var timerHeap = Heap<TimerEntry>()
    /// The thread running `run()` (0: not running), for `assertInEventLoop()`.
    private let owner = Atomic<UInt>(0)
    /// The next token to hand out; 0 is the wake eventfd.
    private var nextToken: Token = 1
    /// Closures queued from other threads.
    private let queue = Mutex<[@Sendable () -> Void]>([])
    /// Cleared by `stop()`.
    private let running = Atomic<Bool>(true)
    /// Why `run()` returned on its own: epoll_wait failed with something other
    /// than EINTR (it would fail again at once); nil after `stop()`.
    public private(set) var failure: SystemError?
    /// Jobs given to `offload` whose completion has not run yet (loop thread only): a test
    /// driving the loop by hand waits for them before it moves its clock.
    public internal(set) var pendingOffloads = 0
    /// The clock timers use; replaceable for tests of the loop itself.
    public let now: @Sendable () -> Duration

    /// Creates the loop; it does not run until `run()`.
    public init(now: @escaping @Sendable () -> Duration = monotonicNow) throws(SystemError) {
        self.now = now
        epfd = try syscall("epoll_create1") { CBatonLinux_epoll_create() }
        wakeFD = try syscall("eventfd") { CBatonLinux_eventfd() }
        try syscall("epoll_ctl") { CBatonLinux_epoll_ctl(epfd, 1, wakeFD, Events.readable.rawValue, 0) }
    }

    deinit {
        close(epfd)
        close(wakeFD)
    }

    /// Watches `fd`; `handler` runs on the loop thread with the ready events.
    /// Level-triggered: a handler that does not drain its fd is called again.
    @discardableResult
    public func register(fd: Int32, events: Events, handler: @escaping (Events) -> Void) throws(SystemError) -> Token {
        assertInEventLoop()
        let token = nextToken
        nextToken += 1
        try syscall("epoll_ctl(ADD)") { CBatonLinux_epoll_ctl(epfd, 1, fd, events.rawValue, token) }
        handlers[token] = handler
        tokensByFD[fd] = token
        return token
    }

    /// Changes which events `fd` is watched for.
    public func modify(fd: Int32, events: Events) {
        assertInEventLoop()
        guard let token = tokensByFD[fd] else { return }
        _ = CBatonLinux_epoll_ctl(epfd, 3, fd, events.rawValue, token)
    }

    /// Stops watching `fd` (call before closing it).
    public func unregister(fd: Int32) {
        assertInEventLoop()
        guard let token = tokensByFD.removeValue(forKey: fd) else { return }
        handlers[token] = nil
        _ = CBatonLinux_epoll_ctl(epfd, 2, fd, 0, 0)
    }

    /// Runs `body` once, `delay` from now.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) -> Token {
        assertInEventLoop()
        let token = nextToken
        nextToken += 1
        timerBodies[token] = body
        timerHeap.insert(TimerEntry(deadline: now() + delay, token: token))
        return token
    }

    /// Cancels a timer; harmless if it already ran.
    public func cancel(_ token: Token) {
        assertInEventLoop()
        guard timerBodies.removeValue(forKey: token) != nil else { return }
        // Cancelled entries stay in the heap until they surface; rebuild it when
        // they dominate so that long timers cancelled early do not pile up.
        if timerHeap.count > 64 && timerHeap.count > 2 * timerBodies.count {
            timerHeap = Heap(timerHeap.unordered.filter { timerBodies[$0.token] != nil })
        }
    }

    /// Timers scheduled and not yet run or cancelled.
    public var pendingTimerCount: Int {
        assertInEventLoop()
        return timerBodies.count
    }

    /// Whether the caller runs on the loop's thread (true before `run()` starts).
    public var inEventLoop: Bool {
        let current = owner.load(ordering: .acquiring)
        return current == 0 || current == UInt(pthread_self())
    }

    /// Traps in debug builds when called off the loop's thread while it runs.
    public func assertInEventLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inEventLoop, "EventLoop API called off the loop thread", file: file, line: line)
    }

    /// Queues `body` to run on the loop thread; callable from any thread.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(body) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Makes `run()` return after the current iteration; callable from any thread.
    public func stop() {
        running.store(false, ordering: .relaxed)
        execute {}
    }

    /// Runs the loop on the calling thread until `stop()`, or until epoll_wait
    /// fails (then `failure` says why).
    public func run() {
        let previous = owner.exchange(UInt(pthread_self()), ordering: .acquiringAndReleasing)
        precondition(previous == 0, "EventLoop.run() called while it already runs")
        defer { owner.store(0, ordering: .releasing) }
        while running.load(ordering: .relaxed) {
            if iterate(timeoutMilliseconds: nextTimeoutMilliseconds()) == nil { return }
        }
    }

    /// One iteration without blocking: the handlers of descriptors ready now, then the timers
    /// due at `now()`. For tests that drive the loop by hand with a manual clock (advance the
    /// clock, pump until nothing ran) instead of running it on a thread. Returns how many
    /// handlers and timers ran (0: nothing was due), nil when epoll_wait failed (`failure`).
    @discardableResult
    public func pump() -> Int? {
        assertInEventLoop()
        return iterate(timeoutMilliseconds: 0)
    }

    /// One iteration that waits up to `milliseconds` for a descriptor (an offloaded job's
    /// completion wakes it), for tests that drive the loop by hand.
    @discardableResult
    public func pump(waitingUpTo milliseconds: Int32) -> Int? {
        assertInEventLoop()
        return iterate(timeoutMilliseconds: milliseconds)
    }

    /// The earliest deadline among pending timers, if any (for a manual clock to jump to).
    public var nextTimerDeadline: Duration? {
        assertInEventLoop()
        return earliestDeadline()
    }

    /// Waits up to `timeoutMilliseconds` (-1: no limit) for descriptors, runs their handlers
    /// and the due timers. Returns how many ran, nil when epoll_wait failed.
    ///
    /// A timer runs only once every descriptor that was ready at the time it is run for has been
    /// handled: the time is read, then the descriptors ready by then are handled, then the timers
    /// due at that time run. A stall (SIGSTOP, a host that gave baton no CPU for seconds) between
    /// the wait and the timers otherwise fired a worker's readiness timeout with its READY=1
    /// unread in its notify socket (a stall audit: 3 of 7 deploys failed, a good release rolled
    /// back), and a stop timeout before the exit of a worker that had drained.
    private func iterate(timeoutMilliseconds timeout: Int32) -> Int? {
        guard var ran = handleReady(timeoutMilliseconds: timeout) else { return nil }
        let current = now()
        guard let earliest = earliestDeadline(), earliest <= current else { return ran }
        // At most a few more batches: a descriptor that is always ready cannot hold the timers off.
        for _ in 0..<4 {
            guard let more = handleReady(timeoutMilliseconds: 0) else { return nil }
            ran += more
            if more < Self.batch { break }
        }
        return ran + runDueTimers(upTo: current)
    }

    /// Descriptors handled per epoll_wait.
    private static let batch = 64

    /// Waits up to `timeout` ms for descriptors and runs their handlers; how many ran, nil
    /// when epoll_wait failed.
    private func handleReady(timeoutMilliseconds timeout: Int32) -> Int? {
        var datas = [UInt64](repeating: 0, count: Self.batch)
        var events = [UInt32](repeating: 0, count: Self.batch)
        let n = CBatonLinux_epoll_wait(epfd, &datas, &events, Int32(Self.batch), timeout)
        if n < 0 {
            // The wrapper already retried EINTR: anything else (EBADF,
            // EINVAL, EFAULT) fails again at once, so going on would spin.
            failure = SystemError("epoll_wait", errno: errno)
            return nil
        }
        var ran = 0
        for i in 0..<Int(n) {
            let token = datas[i]
            if token == 0 {
                drainWake()
                ran += 1
                continue
            }
            // A handler earlier in this batch may have unregistered it.
            guard let handler = handlers[token] else { continue }
            handler(Events(rawValue: events[i]))
            ran += 1
        }
        return ran
    }

    private func drainWake() {
        var value: UInt64 = 0
        _ = read(wakeFD, &value, 8)
        let work = queue.withLock { q -> [@Sendable () -> Void] in
            let items = q
            q.removeAll()
            return items
        }
        for body in work { body() }
    }

    /// The earliest live timer's deadline, dropping cancelled entries on top.
    private func earliestDeadline() -> Duration? {
        while let top = timerHeap.min {
            if timerBodies[top.token] != nil { return top.deadline }
            timerHeap.removeMin()
        }
        return nil
    }

    private func nextTimeoutMilliseconds() -> Int32 {
        guard let earliest = earliestDeadline() else { return -1 }
        let remaining = earliest - now()
        if remaining <= .zero { return 0 }
        let (s, atto) = remaining.components
        let ms = s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }

    /// Runs every timer due at `current`, earliest first. A timer scheduled by
    /// one of them runs in a later iteration, even with a zero delay, so a timer
    /// that re-arms itself cannot starve the descriptors.
    @discardableResult
    private func runDueTimers(upTo current: Duration) -> Int {
        let lastToken = nextToken
        var ran = 0
        while let top = timerHeap.min, top.deadline <= current {
            if top.token >= lastToken { break }
            timerHeap.removeMin()
            // An earlier timer in this batch may have cancelled this one.
            guard let body = timerBodies.removeValue(forKey: top.token) else { continue }
            body()
            ran += 1
        }
        return ran
    }
}
