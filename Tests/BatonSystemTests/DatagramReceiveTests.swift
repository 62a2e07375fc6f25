import BatonSystem
import CBatonLinux
import Glibc
import Testing

/// The two datagram readers of CBatonLinux on real socket pairs: the notify socket's
/// (`CBatonLinux_recv_with_cred`, with the sender's credentials) and the mold channel's
/// (`CBatonLinux_recv_dropping_fds`). Both close every descriptor a datagram carries.
@Suite("datagram receive (notify socket, mold channel)")
struct DatagramReceiveTests {
    /// A pipe (read end, write end). The test attaches the write end to a datagram and closes
    /// its own copy: the read end sees end-of-file once no copy of the write end is left, which
    /// tells whether the reader closed the copies it received. (Counting this process's open
    /// descriptors instead raced with the tests that run beside this one.)
    static func pipeEnds() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// Whether every copy of the write end of the pipe whose read end is `fd` is closed: waits
    /// (bounded, 10 s; a fork elsewhere in the test process holds a copy until its exec) for
    /// end-of-file.
    static func writeEndClosedEverywhere(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 10_000) == 1 else { return false }
        var byte: UInt8 = 0
        return read(fd, &byte, 1) == 0
    }

    /// A socket pair of `type`, closed by the caller.
    static func pair(_ type: Int32) throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    /// Sends `text` with `attached` descriptors (SCM_RIGHTS) on `fd`.
    static func send(_ fd: Int32, _ text: String, attaching attached: [Int32]) -> Int {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { buf in
            attached.withUnsafeBufferPointer { CBatonLinux_send_with_fds(fd, buf.baseAddress, buf.count, $0.baseAddress, Int32(attached.count)) }
        }
    }

    @Test("the notify reader returns the bytes with the sender's pid and uid, and closes the descriptors that came with them")
    func notifyReaderCredentialsAndDescriptors() throws {
        let (receiver, sender) = try Self.pair(Int32(SOCK_DGRAM.rawValue))
        defer {
            close(receiver)
            close(sender)
        }
        try CBatonLinuxShim.setPassCredentials(receiver)
        let (readEnd, writeEnd) = try Self.pipeEnds()
        defer { close(readEnd) }
        let before = wallClockNow()
        #expect(Self.send(sender, "READY=1", attaching: [writeEnd, writeEnd]) == 7)
        let after = wallClockNow()
        close(writeEnd)
        let got = try #require(CBatonLinuxShim.receiveWithCredentials(receiver))
        let sentAt = try #require(got.sentAt, "the kernel's time of the datagram (SO_TIMESTAMPNS)")
        #expect(sentAt >= before - 0.001 && sentAt <= after + 0.001, "\(before) ≤ \(sentAt) ≤ \(after)")
        #expect(String(decoding: got.bytes, as: UTF8.self) == "READY=1")
        #expect(got.pid == getpid())
        #expect(got.uid == getuid())
        #expect(Self.writeEndClosedEverywhere(readEnd), "the attached descriptors were closed, not leaked")
        #expect(!got.truncated)
        #expect(CBatonLinuxShim.receiveWithCredentials(receiver) == nil, "nothing more (EAGAIN: MSG_DONTWAIT)")
        // One that does not fit says so.
        #expect(Self.send(sender, String(repeating: "s", count: 5000), attaching: []) == 5000)
        let long = try #require(CBatonLinuxShim.receiveWithCredentials(receiver))
        #expect(long.truncated && long.bytes.count == 4096)
    }

    @Test("the mold channel's reader closes attached descriptors and says when a datagram did not fit")
    func moldReaderDropsDescriptorsAndReportsTruncation() throws {
        let (receiver, sender) = try Self.pair(Int32(SOCK_SEQPACKET.rawValue))
        defer {
            close(receiver)
            close(sender)
        }
        let (readEnd, writeEnd) = try Self.pipeEnds()
        defer { close(readEnd) }
        #expect(Self.send(sender, "{\"op\":\"promoted\"}", attaching: [writeEnd, writeEnd, writeEnd]) == 17)
        close(writeEnd)
        #expect(Self.send(sender, String(repeating: "x", count: 100), attaching: []) == 100)
        var buffer = [UInt8](repeating: 0, count: 64)
        var truncated: Int32 = -1
        var n = buffer.withUnsafeMutableBytes { CBatonLinux_recv_dropping_fds(receiver, $0.baseAddress, $0.count, &truncated) }
        #expect(n == 17 && truncated == 0)
        #expect(String(decoding: buffer[0..<max(0, n)], as: UTF8.self) == "{\"op\":\"promoted\"}")
        #expect(Self.writeEndClosedEverywhere(readEnd), "the attached descriptors were closed, not leaked")
        n = buffer.withUnsafeMutableBytes { CBatonLinux_recv_dropping_fds(receiver, $0.baseAddress, $0.count, &truncated) }
        #expect(n == 64 && truncated == 1)
        n = buffer.withUnsafeMutableBytes { CBatonLinux_recv_dropping_fds(receiver, $0.baseAddress, $0.count, &truncated) }
        #expect(n == -1 && errno == EAGAIN)
    }
}
