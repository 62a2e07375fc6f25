import BatonSystem
import BatonTestSupport
import Glibc
import Testing

/// Filesystem.makeDirectory on real directories: modes only on what it creates.
@Suite("Filesystem.makeDirectory")
struct FilesystemTests {
    func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }

    @Test("creates missing parents (0755) and the directory with exactly its mode, whatever the umask; returns them outermost first")
    func createsWithMode() throws {
        let root = TestPaths.temporaryDirectory("fs")
        defer { TestPaths.remove(root) }
        let old = umask(0o077)
        defer { umask(old) }
        let created = try Filesystem.makeDirectory(root + "/a/b/c", mode: 0o750)
        #expect(created == [root + "/a", root + "/a/b", root + "/a/b/c"])
        #expect(mode(root + "/a/b/c") == 0o750)
        #expect(try Filesystem.makeDirectory(root + "/a/b/c", mode: 0o700) == [], "existing: nothing created")
        #expect(mode(root + "/a/b/c") == 0o750, "and its mode is left alone")
    }

    @Test("an existing directory keeps its mode; writable by others is refused only when asked; a file is not a directory")
    func existingUntouched() throws {
        let root = TestPaths.temporaryDirectory("fs")
        defer { TestPaths.remove(root) }
        for (name, m) in [("open", mode_t(0o755)), ("shared", mode_t(0o777)), ("sticky", mode_t(0o1777))] {
            _ = mkdir(root + "/" + name, m)
            chmod(root + "/" + name, m)
        }
        #expect(try Filesystem.makeDirectory(root + "/open", mode: 0o700, refuseWritableByOthers: true) == [])
        #expect(mode(root + "/open") == 0o755)
        #expect(try Filesystem.makeDirectory(root + "/shared", mode: 0o700) == [])
        for name in ["shared", "sticky"] {
            #expect(throws: DirectoryError.self) { try Filesystem.makeDirectory(root + "/" + name, mode: 0o700, refuseWritableByOthers: true) }
        }
        #expect(mode(root + "/shared") == 0o777)
        #expect(mode(root + "/sticky") == 0o1777)
        do {
            try Filesystem.makeDirectory(root + "/shared", mode: 0o700, refuseWritableByOthers: true)
        } catch {
            var error = error
            error.key = "app.state_directory"
            #expect(error.description.hasPrefix("app.state_directory: \(root)/shared is writable by others (mode 777): refusing to use it"))
        }
        TestPaths.write(root + "/file", "x")
        #expect(throws: DirectoryError(path: root + "/file", reason: .notADirectory)) {
            try Filesystem.makeDirectory(root + "/file", mode: 0o700)
        }
    }
}
