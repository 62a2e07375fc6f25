import BatonSystem
import Glibc
import Testing

/// `OwnedDescriptor` closes its descriptor exactly once: when its owner drops it, never after
/// `release()`.
@Suite struct OwnedDescriptorTests {
    /// A fresh pipe; the caller owns both ends.
    private func pipeEnds() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    @Test func droppingTheOwnerClosesTheDescriptor() {
        let ends = pipeEnds()
        defer { close(ends.read) }
        do {
            let owned = OwnedDescriptor(ends.write)
            #expect(owned.rawValue == ends.write)
        }
        // The write end is closed: the read end sees end of file at once.
        var byte: UInt8 = 0
        #expect(read(ends.read, &byte, 1) == 0)
    }

    @Test func releaseHandsTheDescriptorOnOpen() {
        let ends = pipeEnds()
        defer { close(ends.read) }
        let owned = OwnedDescriptor(ends.write)
        let raw = owned.release()
        #expect(raw == ends.write)
        #expect(fcntl(raw, F_GETFD) != -1, "still open after release()")
        close(raw)
    }

    @Test func anOptionalOwnerClosesWhenSetToNil() {
        final class Holder { var fd: OwnedDescriptor? }
        let ends = pipeEnds()
        defer { close(ends.read) }
        let holder = Holder()
        holder.fd = OwnedDescriptor(ends.write)
        #expect(holder.fd?.rawValue == ends.write)
        holder.fd = nil
        var byte: UInt8 = 0
        #expect(read(ends.read, &byte, 1) == 0)
    }
}
