import BatonSystem
import Glibc
import Testing

/// The pages of the running executable that `ExecutablePages.pageOut` gives back.
@Suite struct ExecutablePagesTests {
    @Test func onlyReadOnlyMappingsOfTheExecutable() {
        let maps = """
            55d0a0000000-55d0a0010000 r--p 00000000 fd:00 42    /usr/bin/baton
            55d0a0010000-55d0a0090000 r-xp 00010000 fd:00 42    /usr/bin/baton
            55d0a0090000-55d0a00a0000 rw-p 00090000 fd:00 42    /usr/bin/baton
            55d0a00a0000-55d0a00b0000 rw-p 00000000 00:00 0
            7f0000000000-7f0000010000 r-xp 00000000 fd:00 7     /usr/lib/libc.so.6
            7f0000020000-7f0000030000 r-xp 00000000 fd:00 7     /usr/bin/baton-other
            """
        #expect(
            ExecutablePages.readOnlyMappings(maps: maps, executable: "/usr/bin/baton") == [
                .init(start: 0x55d0_a000_0000, end: 0x55d0_a001_0000), .init(start: 0x55d0_a001_0000, end: 0x55d0_a009_0000),
            ])
    }

    /// A replaced binary (`baton upgrade`) shows with " (deleted)" in maps as in /proc/self/exe.
    @Test func aReplacedExecutableStillMatches() {
        let maps = "55d0a0010000-55d0a0090000 r-xp 00010000 fd:00 42    /usr/bin/baton (deleted)\n"
        #expect(ExecutablePages.readOnlyMappings(maps: maps, executable: "/usr/bin/baton (deleted)").count == 1)
    }

    /// On this process (the test binary, mapped by no other process): the resident part of its
    /// read-only executable mappings shrinks, and the advice covered them.
    @Test func pageOutShrinksTheResidentExecutable() throws {
        let before = try #require(Self.residentReadOnlyExecutableKiB())
        try #require(before > 0)
        let advised = try #require(ExecutablePages.pageOut(), "MADV_PAGEOUT refused (kernel before 5.4?)")
        #expect(advised > 0)
        let after = try #require(Self.residentReadOnlyExecutableKiB())
        #expect(after < before, "resident read-only executable pages: \(before) KiB before, \(after) KiB after")
    }

    /// Rss (KiB) of this process's read-only mappings of its own executable, from /proc/self/smaps.
    static func residentReadOnlyExecutableKiB() -> Int? {
        guard let smaps = ProcFS.read("/proc/self/smaps") else { return nil }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let executable = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var total = 0
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), fields.count >= 5, first.first?.isHexDigit == true {
                inside = fields.count >= 6 && fields[5...].joined(separator: " ") == executable && !fields[1].contains("w")
            } else if inside, fields.first == "Rss:", fields.count >= 2, let kib = Int(fields[1]) {
                total += kib
            }
        }
        return total
    }
}
