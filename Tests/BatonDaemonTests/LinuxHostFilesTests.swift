@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Foundation
import Glibc
import Testing

/// `instance.json`'s writer on real files: a failed write or rename throws and leaves no temp
/// file beside the record.
@Suite struct LinuxHostFilesTests {
    /// The names in `directory` other than those the test made.
    static func leftovers(in directory: String, besides kept: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { !kept.contains($0) }.sorted()
    }

    /// An environment file changed to bytes that are not UTF-8 after the config's check was
    /// decoded into U+FFFD at the next spawn; a FIFO there would have held the loop; one of
    /// 60 MiB was read whole before its size was refused (a hostile-input audit: baton's memory
    /// went from 30 to 152 MB, the message said "a config is a small text file").
    @Test func anEnvironmentFileThatIsNotUTF8OrNotAFileOrTooLargeFails() throws {
        let directory = TestPaths.temporaryDirectory("hostfiles")
        defer { TestPaths.remove(directory) }
        let path = directory + "/shop.env"
        #expect(FileManager.default.createFile(atPath: path, contents: Data([0x41, 0x3D, 0xFF, 0x0A])))
        #expect(throws: RegularFile.Failure(path: path, fileProblem: "is not valid UTF-8 text")) { try LinuxHostFiles().read(path) }
        let fifo = FIFOProbe.make(in: directory)
        var failure: RegularFile.Failure?
        #expect(
            !FIFOProbe.blocks(on: fifo) {
                do { _ = try LinuxHostFiles().read(fifo) } catch { failure = error as? RegularFile.Failure }
            })
        #expect(failure?.description == "\(fifo) is not a regular file (a FIFO)")
        let large = directory + "/large.env"
        #expect(FileManager.default.createFile(atPath: large, contents: Data(count: hostFilesMaxBytes + 1)))
        #expect(throws: RegularFile.Failure(path: large, fileProblem: "is larger than 1.0 MiB (\(hostFilesMaxBytes + 1) bytes)")) {
            try LinuxHostFiles().read(large)
        }
        TestPaths.write(path, "A=é\n")
        #expect(try LinuxHostFiles().read(path) == "A=é\n")
    }

    @Test func aFailedRenameThrowsAndLeavesNoTempFile() throws {
        let directory = TestPaths.temporaryDirectory("hostfiles")
        defer { TestPaths.remove(directory) }
        // The target is a directory: rename(2) of a file onto it fails (EISDIR).
        let path = directory + "/instance.json"
        #expect(mkdir(path, 0o755) == 0)
        #expect(throws: SystemError.self) { try LinuxHostFiles().replace(path, with: Array("{}\n".utf8)) }
        #expect(try Self.leftovers(in: directory, besides: ["instance.json"]) == [])
    }

    @Test func aFailedWriteThrowsAndLeavesTheRecordAndNoTempFile() throws {
        let directory = TestPaths.temporaryDirectory("hostfiles")
        defer { TestPaths.remove(directory) }
        let path = directory + "/instance.json"
        TestPaths.write(path, "old\n")
        // The temp file's name leads to /dev/full, where every write fails (ENOSPC): a write
        // that fails even as root, which permission bits would not stop.
        #expect(symlink("/dev/full", AtomicFile.temporaryPath(for: path)) == 0)
        #expect(throws: SystemError.self) { try LinuxHostFiles().replace(path, with: Array("{}\n".utf8)) }
        // Before, the failed write went unseen and the temp file's link replaced the record.
        var info = stat()
        #expect(lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG, "the record is still a file")
        if info.st_mode & S_IFMT == S_IFREG { #expect(ProcFS.read(path) == "old\n", "the record is untouched") }
        #expect(try Self.leftovers(in: directory, besides: ["instance.json"]) == [])
    }

    @Test func aWrittenRecordReplacesTheOldOne() throws {
        let directory = TestPaths.temporaryDirectory("hostfiles")
        defer { TestPaths.remove(directory) }
        let path = directory + "/instance.json"
        TestPaths.write(path, "old\n", mode: 0o600)
        try LinuxHostFiles().replace(path, with: Array("{}\n".utf8))
        #expect(try LinuxHostFiles().read(path) == "{}\n")
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o7777 & ~0o644 == 0, "at most rw-r--r-- (the umask may take more)")
        #expect(try Self.leftovers(in: directory, besides: ["instance.json"]) == [])
    }
}
