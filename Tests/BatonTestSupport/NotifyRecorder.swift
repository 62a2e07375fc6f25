import BatonSystem
import Glibc
import Synchronization

/// A stand-in for systemd's notify socket: a datagram socket that records
/// every message baton sends, with the monotonic time it arrived.
public final class NotifyRecorder: @unchecked Sendable {
    // @unchecked: `messages` is guarded by a Mutex; fd and path are immutable.
    /// Pass as NOTIFY_SOCKET.
    public let path: String
    private let fd: Int32
    private let messages = Protected<[Message]>([])
    private let pauses = Protected<[Pause]>([])
    private let stopFlag = Protected(false)
    /// One datagram.
    public typealias Message = (time: Duration, text: String)
    /// A time the reader thread did not run for longer than ``pauseThreshold``.
    public typealias Pause = (from: Duration, to: Duration)
    /// The reader wakes at least every 100 ms (its poll timeout): a longer interval between
    /// two wake-ups means this process, or the whole machine, was not scheduled.
    public static let pauseThreshold: Duration = .milliseconds(150)
    private var reader: Thread?

    /// Binds a socket at `path` and starts recording.
    public init(path: String) throws {
        self.path = path
        fd = try Sockets.bindUnix(path: path, type: Int32(SOCK_DGRAM.rawValue), mode: 0o600)
        let fd = self.fd
        let box = messages
        let pauseBox = pauses
        let stop = stopFlag
        reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var awake = monotonicNow()
            while !stop.withLock({ $0 }) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, 100)
                let now = monotonicNow()
                if now - awake > Self.pauseThreshold { pauseBox.withLock { $0.append((awake, now)) } }
                awake = now
                guard ready > 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    let text = String(decoding: buffer[0..<n], as: UTF8.self)
                    box.withLock { $0.append((monotonicNow(), text)) }
                }
            }
        }
    }

    /// Every message so far, oldest first.
    public var all: [(time: Duration, text: String)] { messages.withLock { $0 } }

    /// The longest part of `from...to` during which the reader thread was not scheduled
    /// (zero when it always woke within ``pauseThreshold``). A stall of the whole machine (a
    /// loaded CI host) delays every process alike: what baton's messages show of it is not
    /// baton's doing.
    public func longestPause(from: Duration, to: Duration) -> Duration {
        pauses.withLock { list in
            list.map { min($0.to, to) - max($0.from, from) }.filter { $0 > .zero }.max() ?? .zero
        }
    }

    /// Waits for a message whose lines include `line`, after index `from`;
    /// returns its index or nil on timeout.
    @discardableResult
    public func waitFor(line: String, after from: Int = 0, timeout: Duration) -> Int? {
        let deadline = monotonicNow() + timeout
        while monotonicNow() < deadline {
            let snapshot = all
            if from < snapshot.count,
                let i = snapshot[from...].firstIndex(where: { $0.text.split(separator: "\n").contains(Substring(line)) })
            {
                return i
            }
            var pfd = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&pfd, 0, 10)
        }
        return nil
    }

    /// Stops recording and closes the socket.
    public func close() {
        stopFlag.withLock { $0 = true }
        reader?.join()
        reader = nil
        Glibc.close(fd)
        unlink(path)
    }

    deinit { if reader != nil { close() } }
}
