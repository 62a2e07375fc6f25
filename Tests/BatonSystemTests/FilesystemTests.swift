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

    /// The umask is process-wide: setting it here would race with the tests running beside
    /// this one (their directories, files and children would get it). So the check runs in a
    /// child process, this test binary run again for ``createsWithModeUnderUmask077()`` only,
    /// under `sh -c 'umask 077; exec ...'`; the parent then checks what the child made.
    @Test("creates missing parents (0755 minus the umask) and the directory with exactly its mode, whatever the umask (077, in a child process)")
    func createsWithMode() throws {
        let root = TestPaths.temporaryDirectory("fs")
        defer { TestPaths.remove(root) }
        let binary = try #require(Self.readLink("/proc/self/exe"))
        let child = try TestProcess(
            [
                "/bin/sh", "-c", "umask 077; exec \"$0\" --testing-library swift-testing --filter 'FilesystemTests/createsWithModeUnderUmask077'",
                binary,
            ], environment: TestPaths.cleanEnvironment(adding: [Self.childRootVariable: root]))
        let code = child.wait(timeout: .seconds(60)) ?? child.stop(timeout: .seconds(5))
        #expect(code == 0, "\(child.stderrLines.suffix(20))")
        #expect(mode(root + "/a") == 0o700 && mode(root + "/a/b") == 0o700, "parents: 0755 minus the umask 077")
        #expect(mode(root + "/a/b/c") == 0o750, "the directory: exactly its mode")
    }

    /// Where the child run of ``createsWithModeUnderUmask077()`` works; unset in a normal run.
    static let childRootVariable = "BATON_TEST_UMASK_CHILD_ROOT"

    @Test(
        "under umask 077, in the child process createsWithMode starts",
        .enabled(if: getenv(FilesystemTests.childRootVariable) != nil, "run only in createsWithMode's child process"))
    func createsWithModeUnderUmask077() throws {
        let root = try #require(getenv(Self.childRootVariable).map { String(cString: $0) })
        let umaskLine = ProcFS.read("/proc/self/status")?.split(separator: "\n").first { $0.hasPrefix("Umask:") }
        try #require(umaskLine?.hasSuffix("0077") == true, "the child's umask: \(String(describing: umaskLine))")
        let created = try Filesystem.makeDirectory(root + "/a/b/c", mode: 0o750)
        #expect(created == [root + "/a", root + "/a/b", root + "/a/b/c"])
        #expect(mode(root + "/a/b/c") == 0o750)
        #expect(try Filesystem.makeDirectory(root + "/a/b/c", mode: 0o700) == [], "existing: nothing created")
        #expect(mode(root + "/a/b/c") == 0o750, "and its mode is left alone")
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
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
