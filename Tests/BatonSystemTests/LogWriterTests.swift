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

extension LogWriterTests {
    /// Runs `body` with a log file's path, its descriptor (a writer's fd, which a test may point
    /// elsewhere with dup2) and a copy of it (to point it back), all closed and removed after.
    static func withLogFile(_ body: (_ path: String, _ fd: Int32, _ saved: Int32) throws -> Void) throws {
        let path = "/tmp/baton-logwriter-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        let saved = dup(fd)
        defer {
            close(fd)
            close(saved)
            unlink(path)
        }
        try #require(saved >= 0)
        try body(path, fd, saved)
    }

    /// Points `fd` at /dev/full: every write fails with ENOSPC, as on a full disk.
    static func fillUp(_ fd: Int32) throws {
        let full = open("/dev/full", O_WRONLY | O_CLOEXEC)
        try #require(full >= 0)
        _ = dup2(full, fd)
        close(full)
    }

    /// A pipe of 4 KiB (read end, write end) that nobody reads yet.
    static func smallPipe() throws -> [Int32] {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        _ = fcntl(fds[1], 1031, 4096)  // F_SETPIPE_SZ
        return fds
    }

    /// A logs audit: about 1 MiB of lines queued for a stderr nobody read were lost at
    /// `baton upgrade` (the writer thread dies with the execve) and 203 bytes counted.
    @Test func linesAbandonedAtAnExecveAreCounted() throws {
        let fds = try Self.smallPipe()
        defer { fds.forEach { close($0) } }
        let writer = LogWriter(fd: fds[1], capacity: 1 << 20)
        let line = Array((String(repeating: "x", count: 99) + "\n").utf8)
        for _ in 0..<1000 { writer.append(line) }
        writer.flush(timeout: .milliseconds(50))
        writer.abandonUnwritten()
        // Nobody read the pipe: what it took is written, the rest dropped.
        var waiting: Int32 = 0
        _ = ioctl(fds[0], UInt(FIONREAD), &waiting)
        #expect(writer.droppedBytes + UInt64(waiting) >= 100_000, "dropped \(writer.droppedBytes), in the pipe \(waiting)")
        #expect(writer.droppedBytes + UInt64(waiting) <= 100_000 + 4096)
    }

    /// An output audit: on a full disk the line marking the gap was taken as said before its
    /// own write failed, so once there was room again no line marked it. The log file's fd is
    /// /dev/full for a while (a full disk), then the file again.
    @Test func aGapAFullDiskMadeIsMarkedOnceThereIsRoom() throws {
        try Self.withLogFile { path, fd, saved in
            let writer = LogWriter(fd: fd, capacity: 1024)
            writer.append(Array("before\n".utf8))
            writer.flush(timeout: .seconds(10))
            try Self.fillUp(fd)
            writer.append(Array("deploy finished\n".utf8))
            writer.flush(timeout: .seconds(10))
            #expect(writer.droppedBytes == 16)
            _ = dup2(saved, fd)
            writer.append(Array("after\n".utf8))
            writer.flush(timeout: .seconds(10))
            let lines = (try #require(ProcFS.read(path))).split(separator: "\n").map(String.init)
            #expect(lines.count == 3, "\(lines)")
            #expect(lines.first == "before" && lines.last == "after", "\(lines)")
            #expect(
                lines.dropFirst().first?.contains(
                    "WARN log: 16 bytes of baton's log were dropped (writing to stderr failed: No space left on device) (16 since baton started)")
                    == true, "\(lines)")
        }
    }

    /// A re-audit: a write that gave up inside a line (a full disk) left the writer ending that
    /// line before every write, the newline's own write included: it recursed until baton
    /// crashed. Here the fd is a full pipe first (a line's start written, its rest queued), then
    /// /dev/full (the rest given up: a torn line), then a file again.
    @Test func aLineCutByAFullDiskIsEndedOnceThereIsRoom() throws {
        try Self.withLogFile { path, fd, saved in
            let writer = LogWriter(fd: fd, capacity: 1 << 16)  // a file: written inline
            let fds = try Self.smallPipe()
            defer { fds.forEach { close($0) } }
            _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
            _ = dup2(fds[1], fd)
            // Longer than PIPE_BUF: the pipe's 4096 bytes take its start, the rest waits.
            writer.append(Array((String(repeating: "x", count: 4999) + "\n").utf8))
            try Self.fillUp(fd)
            // Room in the pipe: the writer wakes, and its next write meets the full disk.
            var buffer = [UInt8](repeating: 0, count: 8192)
            _ = read(fds[0], &buffer, buffer.count)
            writer.flush(timeout: .seconds(10))
            #expect(writer.droppedBytes == 904, "the torn line's rest")
            _ = dup2(saved, fd)
            writer.append(Array("after\n".utf8))
            writer.flush(timeout: .seconds(10))
            let lines = (try #require(ProcFS.read(path))).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines.count == 4 && lines[0].isEmpty && lines[2] == "after" && lines[3].isEmpty, "\(lines)")
            #expect(lines[1].contains("WARN log: 904 bytes of baton's log were dropped (writing to stderr failed: No space left on device)"), "\(lines)")
        }
    }

    /// A logs audit: once a stalled stderr drained, nothing in the log marked the gap.
    @Test func aLineSaysWhatWasDroppedOnceTheReaderCaughtUp() throws {
        let fds = try Self.smallPipe()
        defer { fds.forEach { close($0) } }
        let writer = LogWriter(fd: fds[1], capacity: 1024)
        let line = Array((String(repeating: "x", count: 99) + "\n").utf8)
        for _ in 0..<200 { writer.append(line) }
        #expect(writer.droppedBytes > 0)
        // The reader catches up: the lines that fitted, then the note.
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<1000 where !text.contains("bytes of baton's log were dropped") {
            let n = read(fds[0], &buffer, buffer.count)
            if n > 0 { text += String(decoding: buffer[0..<n], as: UTF8.self) } else { usleep(5000) }
        }
        let note = text.split(separator: "\n").first { $0.contains("bytes of baton's log were dropped") } ?? ""
        #expect(note.contains("WARN log: \(writer.droppedBytes) bytes of baton's log were dropped while stderr did not keep up"), "\(note)")
    }
}
