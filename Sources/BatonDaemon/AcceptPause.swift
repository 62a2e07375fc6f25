import BatonSystem
import Glibc

/// A listener whose accept failed for want of descriptors or memory (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) stays readable, and accepting again at once spins the loop: an audit with
/// `ulimit -n 40` and 30 idle control connections saw 13,208 failed accept4 calls in 1.5 s,
/// baton at 100 % of a core, and `baton status` answered after 8 s. After such a failure the
/// listener is not watched for a pause that doubles from 50 ms up to 1 s while the failures
/// go on (as Go's net/http backs off), and the first failure of a run is logged, at most once
/// per 10 s (a CI audit: descriptors coming and going between runs logged it 3 times in 190 ms).
/// The control
/// socket and the metrics listener each accept through one (`next()`).
final class AcceptPause {
    private let loop: EventLoop
    private let fd: Int32
    private let report: (String) -> Void
    /// The pause after the last failure (zero: none since the last accepted connection).
    private(set) var delay: Duration = .zero
    private var timer: EventLoop.Token?
    /// When the last failure was logged.
    private var reportedAt: Duration?
    /// The least time between two logged failures.
    static let reportSpacing: Duration = .seconds(10)
    /// Whether the listener is not watched now.
    var isPaused: Bool { timer != nil }

    init(loop: EventLoop, fd: Int32, report: @escaping (String) -> Void) {
        self.loop = loop
        self.fd = fd
        self.report = report
    }

    /// Connections accepted at most per wakeup of the listener: the loop is level-triggered, so
    /// the rest are taken at its next turn, after the other descriptors and timers due. A
    /// metrics audit: 8 threads scraping in a loop kept the accept loop going for the whole
    /// flood: `baton status` timed out (10 s), and a worker killed meanwhile was seen 9 s late.
    static let perWakeup = 16

    /// The next client waiting on the listener (non-blocking, close-on-exec), nil when none
    /// waits now or the accept failed (for want of descriptors or memory: the listener pauses).
    func next() -> Int32? {
        let client = Sockets.acceptNonBlocking(fd)
        guard client >= 0 else {
            failed(errno)
            return nil
        }
        accepted()
        return client
    }

    /// After an accept that failed with `error`: true when the listener is paused for it (the
    /// caller stops accepting), false for an error that is not about resources.
    @discardableResult
    func failed(_ error: Int32) -> Bool {
        guard error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM else { return false }
        if delay == .zero, reportedAt.map({ loop.now() - $0 >= Self.reportSpacing }) ?? true {
            reportedAt = loop.now()
            report("accept failed: \(String(cString: strerror(error))); not accepting for up to 1s at a time until it succeeds")
        }
        delay = delay == .zero ? .milliseconds(50) : min(delay * 2, .seconds(1))
        loop.modify(fd: fd, events: [])
        if let timer { loop.cancel(timer) }
        timer = loop.schedule(after: delay) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.loop.modify(fd: self.fd, events: .readable)
        }
        return true
    }

    /// A connection was accepted: the next failure pauses 50 ms again, and is logged.
    func accepted() { delay = .zero }

    /// The listener is closed: no timer watches it again.
    func cancel() {
        if let timer { loop.cancel(timer) }
        timer = nil
    }
}
