import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension MemoryIntegration {
    /// The memory chain runs beside the main chain only because what it measures shares no
    /// page with the main chain's processes: checked on the kernel's own list of mappings.
    @Suite("private binaries")
    struct PrivateBinariesMapsTests {
        /// The files a process maps (the path column of /proc/PID/maps).
        static func mappedFiles(_ pid: Int32) -> Set<String> {
            let maps = ProcFS.read("/proc/\(pid)/maps") ?? ""
            return Set(maps.split(separator: "\n").compactMap { line in line.firstIndex(of: "/").map { String(line[$0...]) } })
        }

        @Test("baton and its workers in the memory chain map no file of the build or of the toolchain's Swift libraries")
        func privateBinariesMapNothingOfTheBuild() throws {
            let binaries = try #require(TestPaths.binaries, "the memory chain runs on private binaries")
            #expect(TestPaths.executable("baton").hasPrefix(binaries.directory + "/"))
            // The main chain's processes map the build's executables and the toolchain's
            // libraries, the ones this test runner maps too.
            let core = try #require(Self.mappedFiles(getpid()).first { $0.hasSuffix("/libswiftCore.so") })
            let forbidden = [TestPaths.buildDirectory + "/", String(core.dropLast("libswiftCore.so".count))]
            let baton = try BatonHarness(workers: 2, tag: "pbm")
            defer { baton.stop() }
            let workers = try baton.status().workers.map(\.pid)
            #expect(workers.count == 2)
            for pid in [baton.process.pid] + workers {
                let files = Self.mappedFiles(pid)
                #expect(files.contains(binaries.directory + "/lib/libswiftCore.so"), "pid \(pid) maps \(files.sorted())")
                let shared = files.filter { file in forbidden.contains { file.hasPrefix($0) } }
                #expect(shared.isEmpty, "pid \(pid) maps \(shared.sorted())")
            }
        }
    }
}
