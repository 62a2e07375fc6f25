@testable import BatonSystem
import Glibc
import Testing

/// baton's own log writer: what it could not write is counted.
@Suite struct LogWriterTests {
    /// A disk audit: baton's log on a full disk lost thousands of lines (deploy and reload lines
    /// among them) while `log_dropped_bytes` stayed 0: the writer thread gave up on ENOSPC
    /// without counting. /dev/full answers every write with ENOSPC.
    @Test func linesAFullDiskRefusesAreCountedAsDropped() throws {
        let fd = open("/dev/full", O_WRONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let writer = LogWriter(fd: fd, capacity: 1024)
        writer.append(Array("deploy finished\n".utf8))
        writer.append(Array("reload finished\n".utf8))
        writer.flush(timeout: .seconds(10))
        #expect(writer.droppedBytes == 32)
    }
}
