import Glibc

/// Gives back the pages of this process's own executable that start-up touched and steady
/// state does not use (the supervisor calls it once, when every slot first serves).
///
/// The release binary carries the Swift runtime and Foundation statically (no shared copy
/// exists for another process to use), so every page of its code that was ever touched stays
/// in the daemon's RSS as private memory: argument parsing, the config parser, start-up, and
/// the neighbours that the kernel maps around each fault. `MADV_PAGEOUT` on the executable's
/// read-only mappings drops them; what steady state runs faults back in from the file. The
/// kernel skips pages that another process maps too (a `baton` CLI running at that moment), so
/// nothing is taken from anyone else. Clean file pages only: writable mappings (relocated data,
/// heap) are left alone.
public enum ExecutablePages {
    /// `MADV_PAGEOUT` (Linux 5.4); older kernels answer EINVAL and nothing changes.
    static let pageOutAdvice: Int32 = 21

    /// One read-only mapping of the executable file.
    public struct Mapping: Equatable, Sendable {
        /// First byte.
        public var start: UInt
        /// One past the last byte.
        public var end: UInt
        /// A mapping of `start..<end`.
        public init(start: UInt, end: UInt) {
            self.start = start
            self.end = end
        }
    }

    /// The read-only (code and constant data) mappings of `executable` in a /proc/PID/maps text.
    public static func readOnlyMappings(maps: String, executable: String) -> [Mapping] {
        var result: [Mapping] = []
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5].trimmingLeadingSpaces() == executable else { continue }
            let permissions = fields[1]
            guard permissions.hasPrefix("r"), !permissions.contains("w") else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start
            else { continue }
            result.append(Mapping(start: start, end: end))
        }
        return result
    }

    /// Advises the kernel to reclaim this process's read-only executable mappings now.
    /// Returns how many bytes were advised, or nil when /proc/self could not be read or the
    /// kernel refused (too old: EINVAL).
    @discardableResult
    public static func pageOut() -> Int? {
        guard let maps = ProcFS.read("/proc/self/maps"), let executable = selfExecutable() else { return nil }
        var advised = 0
        for mapping in readOnlyMappings(maps: maps, executable: executable) {
            let length = Int(mapping.end - mapping.start)
            guard madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, pageOutAdvice) == 0 else { return nil }
            advised += length
        }
        return advised
    }

    /// The path of the running binary as /proc/self/maps names it.
    static func selfExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Substring {
    fileprivate func trimmingLeadingSpaces() -> Substring { drop { $0 == " " } }
}
