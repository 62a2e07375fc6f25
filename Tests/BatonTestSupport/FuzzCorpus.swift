import Glibc

/// The committed fuzzing corpora (`Fuzz/corpus`, `Fuzz/crashes`), found relative to this file.
public enum FuzzCorpus {
    /// Every regular file in `Fuzz/<folder>`, sorted.
    public static func files(_ folder: String, filePath: String = #filePath) -> [String] {
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
    public static func bytes(_ path: String) -> [UInt8] {
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
