import FoundationEssentials
import Glibc

/// Copies of baton's executables and of the Swift libraries they load, in a temp
/// directory of their own, each run through a wrapper script that points
/// `LD_LIBRARY_PATH` at the copied libraries. The copied executables' RUNPATH names the
/// copied libraries too: baton re-executes itself (`/proc/self/exe __parse-config`) with
/// an environment of its own, without `LD_LIBRARY_PATH`, and that child must not load
/// the toolchain's libraries either.
///
/// Why: PSS divides every shared page among the processes mapping it, so many
/// processes starting or stopping on the same binaries and Swift libraries move
/// the PSS of the workers another test measures (the memory suites run in a serialized
/// chain of their own, beside the main one). Processes started from these copies share
/// no file page with them but the system libraries (libc and the like), which
/// every process of the machine maps. Call `remove()` when done.
public struct PrivateBinaries: Sendable {
    /// The temp directory: the wrappers, `real/` (the executables), `lib/` (the libraries).
    public let directory: String

    /// Copies `names` (executables of the build directory) and the libraries `ldd` finds
    /// for them outside the system library folders.
    public init(_ names: [String] = ["baton", "baton-demo-worker"]) throws {
        directory = TestPaths.temporaryDirectory("bin")
        let real = directory + "/real"
        let lib = directory + "/lib"
        _ = mkdir(real, 0o755)
        _ = mkdir(lib, 0o755)
        do {
            var libraries: Set<String> = []
            for name in names {
                let source = TestPaths.buildDirectory + "/" + name
                try Self.run(["cp", source, real + "/" + name])
                try Self.pointRunpath(of: real + "/" + name, at: "$ORIGIN/../lib")
                libraries.formUnion(try Self.swiftLibraries(of: source))
                TestPaths.write(
                    directory + "/" + name, "#!/bin/sh\nLD_LIBRARY_PATH='\(lib)' exec '\(real)/\(name)' \"$@\"\n", mode: 0o755)
            }
            if !libraries.isEmpty { try Self.run(["cp"] + libraries.sorted() + [lib]) }
        } catch {
            TestPaths.remove(directory)
            throw error
        }
    }

    /// The wrapper that runs the copy of `name` on the copied libraries.
    public func executable(_ name: String) -> String { directory + "/" + name }

    /// Deletes the copies.
    public func remove() { TestPaths.remove(directory) }

    /// The libraries `ldd` resolves for `path`, except the system's (`/lib`, `/usr/lib`):
    /// the Swift runtime and Foundation of the toolchain.
    private static func swiftLibraries(of path: String) throws -> [String] {
        let result = try run(["ldd", path])
        return result.stdout.split(separator: "\n").compactMap { line in
            guard let arrow = line.range(of: "=> ") else { return nil }
            guard let resolved = line[arrow.upperBound...].split(separator: " ").first.map(String.init) else { return nil }
            let system = ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"].contains { resolved.hasPrefix($0) }
            return system || !resolved.hasPrefix("/") ? nil : resolved
        }
    }

    /// Rewrites the executable's RUNPATH (`readelf -d`) to `runpath` in place: the new
    /// string, padded with NULs, over the old one (which must be at least as long) in the
    /// `.dynstr` section (`readelf -S`). The toolchain's path comes first in the build's
    /// RUNPATH, so without this a child run without `LD_LIBRARY_PATH` maps the toolchain's
    /// libraries.
    private static func pointRunpath(of path: String, at runpath: String) throws {
        let dynamic = try run(["readelf", "-d", path]).stdout
        guard let start = dynamic.range(of: "Library runpath: ["),
            let end = dynamic[start.upperBound...].firstIndex(of: "]")
        else { return }
        let old = Array(dynamic[start.upperBound..<end].utf8)
        let new = Array(runpath.utf8)
        let shown = String(decoding: old, as: UTF8.self)
        guard new.count <= old.count else { throw HarnessError("\(path): RUNPATH \(shown) is shorter than \(runpath)") }
        // `[ 6] .dynstr STRTAB ADDRESS OFFSET SIZE ...`: the fields after the name, in hex.
        let sections = try run(["readelf", "-S", "-W", path]).stdout.split(separator: "\n")
        guard let line = sections.first(where: { $0.contains(" .dynstr ") }),
            case let fields = line.split(separator: "]").last?.split(separator: " ") ?? [], fields.count >= 5,
            let offset = Int(fields[3], radix: 16), let size = Int(fields[4], radix: 16)
        else { throw HarnessError("\(path): no .dynstr section in readelf -S") }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard offset + size <= bytes.count else { throw HarnessError("\(path): .dynstr past the end of the file") }
        let table = bytes[offset..<(offset + size)]
        let strings = table.split(separator: 0, omittingEmptySubsequences: false)
        guard let found = strings.first(where: { $0.elementsEqual(old) }) else {
            throw HarnessError("\(path): RUNPATH \(shown) not found in .dynstr")
        }
        bytes.replaceSubrange(found.indices, with: new + [UInt8](repeating: 0, count: old.count - new.count))
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @discardableResult
    private static func run(_ argv: [String]) throws -> CommandResult {
        let result = try TestProcess.run(argv, timeout: .seconds(60))
        guard result.code == 0 else { throw HarnessError("\(argv.joined(separator: " ")) failed (\(result.code)): \(result.stderr)") }
        return result
    }
}
