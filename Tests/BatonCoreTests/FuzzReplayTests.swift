import Glibc
import Testing

@testable import BatonCore

/// The committed fuzzing inputs (`Fuzz/corpus`, `Fuzz/crashes`) replayed through the same
/// entry points the fuzzers use, on every `make test`.
@Suite("fuzz corpus replay")
struct FuzzReplayTests {
    @Test("every config input gets one line from the in-process checks, never a crash or a broken invariant")
    func configInputs() {
        let files = FuzzReplay.files("crashes/config") + FuzzReplay.files("corpus/config")
        #expect(files.count >= 6)
        for file in files {
            let outcome = FuzzEntry.config(FuzzReplay.bytes(file))
            #expect(!outcome.hasPrefix(FuzzEntry.bugMarker) && !outcome.contains("\n"), "\(file): \(outcome)")
        }
    }

    @Test("every control input decodes to a request or one error line")
    func controlInputs() {
        let files = FuzzReplay.files("crashes/control") + FuzzReplay.files("corpus/control")
        #expect(!files.isEmpty)
        for file in files {
            let outcome = FuzzEntry.control(FuzzReplay.bytes(file))
            #expect(!outcome.hasPrefix(FuzzEntry.bugMarker) && !outcome.contains("\n"), "\(file): \(outcome)")
        }
    }
}

/// The committed corpora, found relative to this file.
enum FuzzReplay {
    /// Every regular file in `Fuzz/<folder>`, sorted.
    static func files(_ folder: String, filePath: String = #filePath) -> [String] {
        var root = filePath
        for _ in 0..<3 { root = String(root[..<(root.lastIndex(of: "/") ?? root.startIndex)]) }
        let directory = root + "/Fuzz/" + folder
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix("."), entry.pointee.d_type == UInt8(DT_REG) { names.append(directory + "/" + name) }
        }
        return names.sorted()
    }

    /// A file's bytes (empty when unreadable).
    static func bytes(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return bytes }
            bytes += buffer[0..<n]
        }
    }
}
