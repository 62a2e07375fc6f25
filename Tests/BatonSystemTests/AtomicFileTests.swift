import BatonCore
import BatonSystem
import BatonTestSupport
import Foundation
import Glibc
import Testing

/// The one temp-file-and-rename writer, durable (the state directory) or not (`instance.json`):
/// a failure throws, leaves the target as it was and no temp file beside it.
@Suite struct AtomicFileTests {
    /// The names in `directory`, sorted.
    static func names(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    @Test(arguments: [true, false])
    func replacesTheFileWithAtMostItsMode(durable: Bool) throws {
        let directory = TestPaths.temporaryDirectory("atomic")
        defer { TestPaths.remove(directory) }
        let path = directory + "/file.json"
        TestPaths.write(path, "old\n", mode: 0o600)
        try AtomicFile.replace(path, with: Array("new\n".utf8), mode: 0o640, durable: durable)
        #expect(ProcFS.read(path) == "new\n")
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o7777 & ~0o640 == 0, "at most rw-r----- (the umask may take more)")
        #expect(try Self.names(in: directory) == ["file.json"])
    }

    @Test(arguments: [true, false])
    func aFailedRenameLeavesNoTempFile(durable: Bool) throws {
        let directory = TestPaths.temporaryDirectory("atomic")
        defer { TestPaths.remove(directory) }
        let path = directory + "/file.json"
        #expect(mkdir(path, 0o755) == 0)
        #expect(throws: SystemError.self) { try AtomicFile.replace(path, with: Array("new\n".utf8), mode: 0o640, durable: durable) }
        #expect(try Self.names(in: directory) == ["file.json"])
    }

    @Test(arguments: [true, false])
    func aFailedWriteThrowsAndLeavesTheFile(durable: Bool) throws {
        let directory = TestPaths.temporaryDirectory("atomic")
        defer { TestPaths.remove(directory) }
        let path = directory + "/file.json"
        TestPaths.write(path, "old\n")
        // Every write to /dev/full fails (ENOSPC), as root too.
        #expect(symlink("/dev/full", AtomicFile.temporaryPath(for: path)) == 0)
        let error = #expect(throws: SystemError.self) {
            try AtomicFile.replace(path, with: Array("new\n".utf8), mode: 0o640, durable: durable)
        }
        #expect(error?.errno == ENOSPC)
        #expect(ProcFS.read(path) == "old\n")
        #expect(try Self.names(in: directory) == ["file.json"])
    }

    /// The state store's release.json, over a directory: the rename fails; before, its temp
    /// file stayed behind.
    @Test func theStateStoreLeavesNoTempFileWhenItsRenameFails() throws {
        let directory = TestPaths.temporaryDirectory("atomic")
        defer { TestPaths.remove(directory) }
        #expect(mkdir(directory + "/release.json", 0o755) == 0)
        let store = try StateStore(directory: directory)
        #expect(throws: SystemError.self) { try store.save(ReleaseState(current: Release(directory: "/srv/app/r2"), previous: nil)) }
        #expect(try Self.names(in: directory) == ["release.json"])
    }
}
