import CBatonLinux
import Glibc
import Synchronization

/// baton's own log on its way to stderr, never blocking the thread that logs
/// (the event loop, which must keep answering the control socket and
/// SIGTERM whatever a slow or stuck stderr does: a pipe nobody reads, a
/// stalled journal). A line is written at once, non-blocking, when nothing is
/// queued before it (so the log keeps its order with what baton does next);
/// what the fd does not take waits in a bounded queue that a thread of its
/// own writes as the fd drains. What does not fit in the queue is dropped
/// whole, a line at a time, and counted.
public final class LogWriter: Sendable {
    /// The process-wide writer for fd 2, started on first use.
    public static let standardError = LogWriter(fd: 2, capacity: defaultCapacity)
    /// Bytes of log lines waiting for stderr at most (1 MiB).
    public static let defaultCapacity = 1 << 20

    private struct Queue {
        var pending: [UInt8] = []
        /// True while the writer thread is writing bytes it took from `pending`.
        var writing = false
        /// Bytes were dropped before `pending` began, and no line said so yet: the writer says
        /// it before it writes them.
        var gapBefore = false
    }

    /// How a write that must not block is made on this fd.
    private enum Sink {
        /// A socket (the journal's stream): send(MSG_DONTWAIT).
        case socket
        /// A second, O_NONBLOCK open file description of a pipe, FIFO or tty
        /// (fd 2's own flags are shared with whoever else holds it: left alone).
        case nonBlocking(Int32)
        /// A regular file: its writes do not wait for a reader.
        case file
        /// Nothing non-blocking is possible: every line goes through the writer thread.
        case queueOnly
    }

    private let fd: Int32
    private let capacity: Int
    private let sink: Sink
    private let queue = Mutex(Queue())
    private let dropped = Atomic<UInt64>(0)
    /// Bytes of the batch the writer thread holds that are not written yet.
    private let unwritten = Atomic<Int>(0)
    /// Set by ``abandonUnwritten()``: the writer thread writes no more.
    private let abandoned = Atomic<Bool>(false)
    /// Of `dropped`, what a line in the log has said (``sayWhatWasDropped()``).
    private let reported = Atomic<UInt64>(0)
    /// The last byte written was not a newline: a write gave up inside a line (a full disk took
    /// part of it), and the next write ends that line first, so no line is glued to its torn
    /// start (an output audit: `2026-12-07T14:292026-12-07T14:29:27.338Z INFO …`).
    private let insideLine = Atomic<Bool>(false)
    /// The last byte written was not a newline (a line's rest waits in the queue, or a write
    /// gave up inside it: then ``insideLine``).
    private let lastByteOpen = Atomic<Bool>(false)
    /// Why the last write that gave up did (an errno; 0: none gave up, only the queue was full).
    private let lastFailure = Atomic<Int32>(0)
    /// Wakes the writer thread (an eventfd).
    private let wake: Int32
    /// Whether the writer thread runs (else every line is written inline, blocking).
    private let running = Atomic<Bool>(false)

    /// A writer for `fd` that queues at most `capacity` bytes. Falls back to
    /// plain blocking writes when no eventfd or thread can be made.
    init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = capacity
        sink = Self.sink(for: fd)
        wake = CBatonLinux_eventfd()
        guard wake >= 0 else { return }
        let thread = WriterThread { [self] in self.drainForever() }
        let box = Unmanaged.passRetained(thread).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(
            &handle, nil,
            { arg in
                Unmanaged<WriterThread>.fromOpaque(arg!).takeRetainedValue().body()
                return nil
            }, box)
        if rc == 0 {
            pthread_detach(handle)
            running.store(true, ordering: .releasing)
            // Whatever is queued at exit gets a bounded chance to reach stderr.
            if fd == 2 { atexit { LogWriter.standardError.flush(timeout: .seconds(2)) } }
        } else {
            Unmanaged<WriterThread>.fromOpaque(box).release()
        }
    }

    private static func sink(for fd: Int32) -> Sink {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .queueOnly }
        switch st.st_mode & S_IFMT {
        case S_IFSOCK: return .socket
        case S_IFREG: return .file
        default:
            let twin = open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            return twin >= 0 ? .nonBlocking(twin) : .queueOnly
        }
    }

    /// Bytes dropped so far because the queue was full (those an earlier image of this
    /// process counted included, ``carryDropped(_:)``).
    public var droppedBytes: UInt64 { dropped.load(ordering: .relaxed) }

    /// Adds what the image before a `baton upgrade` had dropped: the count never decreases.
    public func carryDropped(_ bytes: UInt64) {
        dropped.add(bytes, ordering: .relaxed)
        reported.add(bytes, ordering: .relaxed)
    }

    /// Counts what is still queued or being written as dropped, and writes no more of it: the
    /// writer thread does not survive the execve of `baton upgrade`, and the next image carries
    /// the count (a logs audit: about 1 MiB of queued lines lost at an upgrade, 203 bytes
    /// counted). At most one write in progress meanwhile is counted although it was written.
    public func abandonUnwritten() {
        guard running.load(ordering: .acquiring) else { return }
        abandoned.store(true, ordering: .sequentiallyConsistent)
        let queued = queue.withLock { q -> Int in
            let n = q.pending.count
            q.pending.removeAll()
            return n
        }
        dropped.add(UInt64(queued + unwritten.exchange(0, ordering: .sequentiallyConsistent)), ordering: .relaxed)
    }

    /// Writes again after ``abandonUnwritten()`` (the execve failed: the old image runs on).
    public func resumeWriting() {
        abandoned.store(false, ordering: .sequentiallyConsistent)
    }

    /// Writes or queues `line` (one whole line, newline included); never waits for the fd.
    public func append(_ line: [UInt8]) {
        guard running.load(ordering: .acquiring) else {
            writeAll(fd, line)
            return
        }
        let signal = queue.withLock { q -> Bool in
            var rest = line[...]
            let unsaid = dropped.load(ordering: .relaxed) != reported.load(ordering: .relaxed) || insideLine.load(ordering: .relaxed)
            if q.pending.isEmpty && !q.writing && !unsaid {
                let n = tryWrite(rest)
                if n == rest.count { return false }
                rest = rest.dropFirst(n)
                // Part of the line went out: the rest must follow, even past the bound.
                if n > 0 {
                    q.pending += rest
                    return true
                }
            }
            guard q.pending.count + rest.count <= capacity else {
                dropped.add(UInt64(rest.count), ordering: .relaxed)
                return false
            }
            let wasEmpty = q.pending.isEmpty
            if wasEmpty && !q.writing && unsaid { q.gapBefore = true }
            q.pending += rest
            return wasEmpty
        }
        if signal {
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        }
    }

    /// One non-blocking write attempt; the bytes it took (0 when the fd is full).
    private func tryWrite(_ bytes: ArraySlice<UInt8>) -> Int {
        bytes.withUnsafeBytes { raw -> Int in
            var n: Int
            repeat {
                switch sink {
                case .socket: n = send(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                case .nonBlocking(let twin): n = write(twin, raw.baseAddress, raw.count)
                case .file: n = write(fd, raw.baseAddress, raw.count)
                case .queueOnly: return 0
                }
            } while n < 0 && errno == EINTR
            if n > 0 { lastByteOpen.store(raw[n - 1] != 0x0A, ordering: .relaxed) }
            return max(n, 0)
        }
    }

    /// Waits up to `timeout` for everything queued to be written (before exit or execve).
    public func flush(timeout: Duration) {
        guard running.load(ordering: .acquiring) else { return }
        let deadline = monotonicNow() + timeout
        while queue.withLock({ !$0.pending.isEmpty || $0.writing }), monotonicNow() < deadline {
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 0, 5)
        }
    }

    /// The writer thread: waits for queued lines and writes them (waiting is fine here).
    private func drainForever() {
        while true {
            var pfd = pollfd(fd: wake, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, -1) >= 0 || errno == EINTR else { return }
            var value: UInt64 = 0
            _ = read(wake, &value, 8)
            while true {
                let (batch, gapBefore) = queue.withLock { q -> ([UInt8], Bool) in
                    let taken = (q.pending, q.gapBefore)
                    q.pending.removeAll(keepingCapacity: true)
                    q.gapBefore = false
                    q.writing = !taken.0.isEmpty
                    return taken
                }
                if batch.isEmpty { break }
                // Lines dropped while nothing was queued (a full disk, then room again): the gap
                // is before these.
                if gapBefore { sayWhatWasDropped() }
                writeWaiting(batch)
                queue.withLock { $0.writing = false }
            }
            sayWhatWasDropped()
        }
    }

    /// Once the writer caught up, a line that says how much was dropped since the last such
    /// line (a logs audit: nothing in the log marked the gap where a stalled reader lost the
    /// deploy, crash and respawn lines; only `baton status` counted them).
    private func sayWhatWasDropped() {
        let lost = dropped.load(ordering: .relaxed) &- reported.load(ordering: .relaxed)
        guard lost > 0, lost < UInt64(Int64.max), !abandoned.load(ordering: .sequentiallyConsistent) else { return }
        let failure = lastFailure.load(ordering: .relaxed)
        let why = failure == 0 ? "while stderr did not keep up" : "(writing to stderr failed: \(String(cString: strerror(failure))))"
        let text = "log: \(lost) bytes of baton's log were dropped \(why) (\(dropped.load(ordering: .relaxed)) since baton started)"
        // Not counted when it cannot be written itself (a full disk): the count is of log lines.
        // Said again at the next chance until it is written (an output audit: the line was
        // taken as said before its write failed on ENOSPC, and no line ever marked the gap).
        if writeWaiting(Array(BatonLogHandler.line(.warning, text).utf8), counting: false) {
            reported.add(lost, ordering: .relaxed)
            lastFailure.store(0, ordering: .relaxed)
        }
    }

    /// Writes all of `bytes`, waiting for POLLOUT when the fd is full; gives up on
    /// an error (a closed stderr, a full disk), counting what it gave up as dropped: a disk
    /// audit lost thousands of lines to a log file on a full disk with `log_dropped_bytes` 0.
    @discardableResult
    private func writeWaiting(_ bytes: [UInt8], counting: Bool = true, endingLine: Bool = false) -> Bool {
        // A line a failed write left open ends first (its torn start stays: it was written).
        // Not again for that newline itself: a re-audit's full disk recursed here until baton
        // crashed (SIGSEGV, the workers left to pid 1).
        if !endingLine, insideLine.load(ordering: .relaxed) {
            guard writeWaiting([0x0A], counting: false, endingLine: true) else {
                if counting { dropped.add(UInt64(bytes.count), ordering: .relaxed) }
                return false
            }
        }
        var offset = 0
        let target: Int32
        if case .nonBlocking(let twin) = sink { target = twin } else { target = fd }
        unwritten.store(bytes.count, ordering: .sequentiallyConsistent)
        defer { unwritten.store(0, ordering: .sequentiallyConsistent) }
        return bytes.withUnsafeBytes { raw -> Bool in
            while offset < raw.count, !abandoned.load(ordering: .sequentiallyConsistent) {
                let n = write(target, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 {
                    offset += n
                    unwritten.subtract(n, ordering: .sequentiallyConsistent)
                    lastByteOpen.store(raw[offset - 1] != 0x0A, ordering: .relaxed)
                    if endingLine { insideLine.store(false, ordering: .relaxed) }
                } else if n == 0 || errno == EAGAIN {
                    var pfd = pollfd(fd: target, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&pfd, 1, -1)
                } else if errno != EINTR {
                    lastFailure.store(errno, ordering: .relaxed)
                    // What is given up here is dropped: a line begun stays torn (a line's rest
                    // that only waited in the queue, a partial write that goes on, is no tear).
                    if lastByteOpen.load(ordering: .relaxed) { insideLine.store(true, ordering: .relaxed) }
                    if counting { dropped.add(UInt64(raw.count - offset), ordering: .relaxed) }
                    unwritten.store(0, ordering: .sequentiallyConsistent)
                    return false
                }
            }
            return offset == raw.count
        }
    }
}

/// The closure a writer thread runs.
private final class WriterThread: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
