import CSystemd
import Glibc

/// Notify messages sent without blocking (`X_BATON_REQUESTS=`, `WATCHDOG=1`, `STOPPING=1`;
/// READY=1 goes through `sd_notify`, which waits). A worker's notify socket queues 10 datagrams
/// (`net.unix.max_dgram_qlen`), and libsystemd's `sd_notify` blocks the calling thread once the
/// queue is full: while baton was stopped or busy, every connection thread that reached its
/// report waited, and requests on kept-alive connections stalled until baton read again (a
/// stall audit: 8 connections made no progress for the 40 s baton was stopped); so did the
/// drain's STOPPING=1. A message that finds the queue full is dropped: the next report carries
/// the newer count, the next ping comes half an interval later.
enum Notify {
    /// The notify socket's address, from `NOTIFY_SOCKET` (a path, or `@name` for the abstract
    /// namespace); nil without one.
    private static let address: (storage: sockaddr_un, length: socklen_t)? = {
        guard let value = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !value.isEmpty else { return nil }
        var bytes = Array(value.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &storage.sun_path) { path in
            for (i, byte) in bytes.enumerated() { path[i] = byte }
        }
        let length = MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1)
        return (storage, socklen_t(length))
    }()

    /// One non-blocking datagram socket for every message.
    private static let socketFD: Int32 = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)

    /// Sends `message`, or drops it when the queue is full.
    static func withoutBlocking(_ message: String) {
        guard var target = address, socketFD >= 0 else { return }
        let text = Array(message.utf8)
        _ = text.withUnsafeBytes { bytes in
            withUnsafePointer(to: &target.storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(socketFD, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, target.length)
                }
            }
        }
    }
}
