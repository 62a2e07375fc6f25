import CBatonLinux
import Glibc
import Synchronization

/// baton's own log on its way to stderr: a bounded in-memory queue written by
/// a thread of its own, so a slow or stuck stderr (a pipe nobody reads, a
/// stalled journal) never blocks the thread that logs (the event loop, which
/// must keep answering the control socket and SIGTERM). What does not fit in
/// the queue is dropped whole, a line at a time, and counted.
public final class LogWriter: Sendable {
    /// The process-wide writer for fd 2, started on first use.
    public static let standardError = LogWriter(fd: 2, capacity: defaultCapacity)
    /// Bytes of log lines waiting for stderr at most (1 MiB).
    public static let defaultCapacity = 1 << 20

    private struct Queue {
        var pending: [UInt8] = []
        /// True while the writer thread is in write(2) with bytes it took from `pending`.
        var writing = false
    }

    private let fd: Int32
    private let capacity: Int
    private let queue = Mutex(Queue())
    private let dropped = Atomic<UInt64>(0)
    /// Wakes the writer thread (an eventfd: `append` signals when the queue was empty).
    private let wake: Int32

    /// A writer for `fd` that queues at most `capacity` bytes. Falls back to
    /// writing inline (blocking) when no eventfd or thread can be made.
    init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = capacity
        wake = CBatonLinux_eventfd()
        guard wake >= 0 else { return }
        let body = WriterThread { [self] in self.drainForever() }
        let box = Unmanaged.passRetained(body).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { arg in
                Unmanaged<WriterThread>.fromOpaque(arg!).takeRetainedValue().body()
                return nil
            }, box)
        if rc == 0 {
            pthread_detach(thread)
            // Whatever is queued at exit gets a bounded chance to reach stderr.
            if fd == 2 { atexit { LogWriter.standardError.flush(timeout: .seconds(2)) } }
        } else {
            Unmanaged<WriterThread>.fromOpaque(box).release()
            close(wake)
        }
    }

    /// Bytes dropped so far because the queue was full.
    public var droppedBytes: UInt64 { dropped.load(ordering: .relaxed) }

    /// Queues `line` (one whole line, newline included); never blocks on the fd.
    public func append(_ line: [UInt8]) {
        guard wake >= 0 else {
            writeAll(fd, line)
            return
        }
        let signal = queue.withLock { q -> Bool? in
            guard q.pending.count + line.count <= capacity else { return nil }
            let wasEmpty = q.pending.isEmpty
            q.pending += line
            return wasEmpty
        }
        switch signal {
        case nil: dropped.add(UInt64(line.count), ordering: .relaxed)
        case true?:
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        case false?: break
        }
    }

    /// Waits up to `timeout` for everything queued to be written (before exit or execve).
    public func flush(timeout: Duration) {
        guard wake >= 0 else { return }
        let deadline = monotonicNow() + timeout
        while queue.withLock({ !$0.pending.isEmpty || $0.writing }), monotonicNow() < deadline {
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 0, 5)
        }
    }

    /// The writer thread: waits for lines, writes them (blocking is fine here).
    private func drainForever() {
        while true {
            var pfd = pollfd(fd: wake, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, -1) >= 0 || errno == EINTR else { return }
            var value: UInt64 = 0
            _ = read(wake, &value, 8)
            while true {
                let batch = queue.withLock { q -> [UInt8] in
                    let taken = q.pending
                    q.pending.removeAll(keepingCapacity: true)
                    q.writing = !taken.isEmpty
                    return taken
                }
                if batch.isEmpty { break }
                writeBlocking(batch)
                queue.withLock { $0.writing = false }
            }
        }
    }

    /// write(2) until done, waiting for POLLOUT if the fd is non-blocking; gives up
    /// on an error (a closed stderr).
    private func writeBlocking(_ bytes: [UInt8]) {
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n >= 0 {
                    offset += n
                } else if errno == EAGAIN {
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&pfd, 1, -1)
                } else if errno != EINTR {
                    return
                }
            }
        }
    }
}

/// The closure a writer thread runs.
private final class WriterThread: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
