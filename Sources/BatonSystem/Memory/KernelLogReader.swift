import BatonCore
import Glibc

/// Reads the kernel log's new records from `/dev/kmsg` without blocking: what names an OOM
/// kill's victim (`Killed process PID (comm)`), which the cgroup counters do not.
///
/// Opened once, positioned at the end (records from before baton started are not its news);
/// each ``newOOMKills()`` reads what arrived since. Reading needs CAP_SYSLOG or
/// `kernel.dmesg_restrict = 0`; without it ``isOpen`` is false and callers attribute kills
/// from the process tree alone.
public final class KernelLogReader {
    /// The descriptor, or -1.
    private var fd: Int32
    /// Why it could not be opened, if it could not.
    public let openError: String?

    /// Opens `path` (default `/dev/kmsg`) at its end.
    public init(path: String = "/dev/kmsg") {
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            openError = "\(path): \(String(cString: strerror(errno)))"
            return
        }
        openError = nil
        _ = lseek(fd, 0, SEEK_END)
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Whether the log could be opened.
    public var isOpen: Bool { fd >= 0 }

    /// The OOM kills announced since the last call (at most 4096 records read per call).
    public func newOOMKills() -> [OOMKillMessage] {
        guard fd >= 0 else { return [] }
        var kills: [OOMKillMessage] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        for _ in 0..<4096 {
            // One read returns one record.
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                // EPIPE: records were overwritten before they were read; the next read goes on.
                if errno == EPIPE { continue }
                break  // EAGAIN: nothing more
            }
            if n == 0 { break }
            let record = String(decoding: buffer[0..<n], as: UTF8.self)
            if let kill = OOMKillMessage.parse(record) { kills.append(kill) }
        }
        return kills
    }
}
