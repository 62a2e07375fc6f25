import Glibc

/// The process-wide state shared by the main, signal, accept and connection threads.
///
/// The drain is announced two ways: `draining` (read under the lock, e.g. to choose
/// `Connection: close`) and the drain pipe, which becomes readable forever once the drain has
/// begun, so threads blocked in `poll(2)` (the acceptor, idle connections) wake up at once.
///
/// `@unchecked Sendable`: every mutable property is private and read or written only with
/// `monitor` locked; `drainPipe` is immutable after `init`.
final class WorkerState: @unchecked Sendable {
    /// How the main thread's final wait ended.
    enum Ending: Equatable {
        /// Draining, the acceptor stopped and no connection is left.
        case drained
        /// The drain timeout passed with this many connections still open.
        case drainTimedOut(openConnections: Int)
        /// `--crash-after` elapsed.
        case crashTimer
    }

    private let monitor = Monitor()
    /// Read end: polled by every thread that must notice the drain. Write end: written once.
    let drainPipe: (read: Int32, write: Int32)
    /// Monotonic time when SIGTERM/SIGINT started the drain; nil while serving normally.
    private var drainStartedAt: UInt64?
    /// Connections accepted and not yet closed (their threads are running).
    private var openConnections = 0
    /// Whether the accept thread may still create connections.
    private var acceptorRunning = false
    /// Requests answered by this process.
    private var requestsServed = 0
    /// Monotonic time of the last `X_BATON_REQUESTS=` report.
    private var lastReportAt: UInt64 = 0
    /// Connections with a request in flight or a first request still to come.
    private var busyConnections = 0
    /// The `--crash-after` timer fired: accept nothing more, end every connection after its
    /// current answer, and crash once no request is in flight.
    private var crashing = false

    init() {
        var fds: [Int32] = [-1, -1]
        // Glibc's module does not export pipe2; no thread exists yet, so nothing can exec
        // between pipe() and FD_CLOEXEC (nothing here ever execs anyway).
        guard pipe(&fds) == 0 else { fail("pipe: \(errorText(errno))", status: 1) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        drainPipe = (fds[0], fds[1])
    }

    var isDraining: Bool { monitor.withLock { drainStartedAt != nil } }

    /// Starts the drain once; `announce` runs under the lock, so nothing announced by
    /// `unlessDraining` can follow it. Returns false when the drain had already begun.
    func beginDrain(announce: () -> Void) -> Bool {
        monitor.withLock {
            guard drainStartedAt == nil else { return false }
            drainStartedAt = monotonicNanos()
            var byte: UInt8 = 1
            _ = write(drainPipe.write, &byte, 1)
            announce()
            monitor.broadcast()
            return true
        }
    }

    /// Runs `body` under the lock unless the drain has begun (then returns nil).
    func unlessDraining<T>(_ body: () -> T) -> T? {
        monitor.withLock { drainStartedAt == nil ? body() : nil }
    }

    /// Counts one more answered request and returns the new total.
    func countRequest() -> Int {
        monitor.withLock {
            requestsServed += 1
            return requestsServed
        }
    }

    /// Whether the count is due to be reported now: at most one report per `interval`
    /// nanoseconds across every connection thread (the count is cumulative, so a skipped
    /// report is carried by the next one).
    func reportDue(now: UInt64, interval: UInt64) -> Bool {
        monitor.withLock {
            guard now &- lastReportAt >= interval else { return false }
            lastReportAt = now
            return true
        }
    }

    func acceptorStarted() { monitor.withLock { acceptorRunning = true } }

    func acceptorStopped() {
        monitor.withLock {
            acceptorRunning = false
            monitor.broadcast()
        }
    }

    /// Accepts one connection from `listener` unless the simulated crash has begun (then
    /// returns nil: connections stay in the shared backlog for the other workers). Returns the
    /// descriptor, or -1 and the errno. An accepted connection is counted before its thread
    /// exists, so the main thread never sees zero connections while one is being handed over,
    /// and busy until its first answer (its client connected to send a request). Listeners are
    /// non-blocking, so the lock is never held across a wait.
    func accept(_ listener: Int32) -> (fd: Int32, error: Int32)? {
        monitor.withLock {
            guard !crashing else { return nil }
            let fd = Glibc.accept(listener, nil, nil)
            guard fd >= 0 else { return (-1, errno) }
            openConnections += 1
            busyConnections += 1
            return (fd, 0)
        }
    }

    /// Called by a connection's thread after it closed its socket.
    func connectionClosed(busy: Bool) {
        monitor.withLock {
            openConnections -= 1
            if busy { busyConnections -= 1 }
            monitor.broadcast()
        }
    }

    /// An idle connection received the first bytes of its next request.
    func requestArrived() {
        monitor.withLock { busyConnections += 1 }
    }

    /// A connection wrote its answer and is idle. Returns false when the simulated crash has
    /// begun: the connection then ends instead of waiting for another request.
    func requestAnswered() -> Bool {
        monitor.withLock {
            busyConnections -= 1
            monitor.broadcast()
            return !crashing
        }
    }

    /// Begins the simulated crash and waits, at most until `deadline`, until no request is in
    /// flight; returns how many still were. A crash mid-request fails that request whatever a
    /// supervisor does, so the simulation picks a moment between requests: what it tests is
    /// the supervisor's handling of the exit.
    func beginCrash(deadline: UInt64) -> Int {
        monitor.withLock {
            crashing = true
            while busyConnections > 0 && monotonicNanos() < deadline { monitor.wait(until: deadline) }
            return busyConnections
        }
    }

    /// Waits until `deadline` (the end of the boot delay); returns false if a drain began first.
    func waitUnlessDraining(until deadline: UInt64) -> Bool {
        monitor.withLock {
            while drainStartedAt == nil && monotonicNanos() < deadline {
                monitor.wait(until: deadline)
            }
            return drainStartedAt == nil
        }
    }

    /// The main thread's last wait: returns when the process should exit.
    func waitForEnding(drainTimeout: Double, crashAt: UInt64?) -> Ending {
        monitor.withLock {
            while true {
                let now = monotonicNanos()
                if let crashAt, now >= crashAt { return .crashTimer }
                var deadline = crashAt
                if let drainStartedAt {
                    if !acceptorRunning && openConnections == 0 { return .drained }
                    let drainDeadline = drainStartedAt + nanos(seconds: drainTimeout)
                    if now >= drainDeadline { return .drainTimedOut(openConnections: openConnections) }
                    deadline = min(deadline ?? drainDeadline, drainDeadline)
                }
                monitor.wait(until: deadline)
            }
        }
    }
}
