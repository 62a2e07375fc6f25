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

    /// `outputPipe()` owns both ends from the start: an end a caller keeps stays open, the
    /// other closes with the pipe.
    @Test func anOutputPipeClosesTheEndItStillOwns() throws {
        var reader: OwnedDescriptor? = nil
        do {
            let pipe = try CBatonLinuxShim.outputPipe()
            reader = consume pipe.read
        }
        let fd = reader?.rawValue ?? -1
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0, "the write end is closed: end of file, not EAGAIN")
    }

    /// `MoldChannel.pair()`: the child's end closes with the pair unless taken, and baton's
    /// end closes with its channel (the peer then reads end of file).
    @Test func aMoldChannelPairClosesEachEndWithItsOwner() throws {
        let channel: MoldChannel
        do {
            let pair = try MoldChannel.pair()
            channel = pair.channel
        }
        // Waited for, as below (a fresh-clone run read EAGAIN here, the child's end held a moment
        // by another process of the test run: 1 of 1130 tests failed once).
        var closed = pollfd(fd: channel.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&closed, 1, 10_000) == 1)
        #expect(throws: MoldError("the worker closed its channel")) { try channel.receivePromoted() }

        var otherEnd: OwnedDescriptor? = nil
        do {
            let pair = try MoldChannel.pair()
            otherEnd = consume pair.otherEnd
        }
        var byte: UInt8 = 0
        // Waited for, bounded: a process another test forks in the meantime holds a copy of
        // every descriptor until it execs (close-on-exec), so the end of file may come a moment
        // later (a full run on a loaded machine read EAGAIN at once).
        var hangUp = pollfd(fd: otherEnd?.rawValue ?? -1, events: Int16(POLLIN), revents: 0)
        #expect(poll(&hangUp, 1, 10_000) == 1)
        #expect(recv(otherEnd?.rawValue ?? -1, &byte, 1, Int32(MSG_DONTWAIT)) == 0, "baton's end went with its channel")
    }
}
