import BatonTestSupport
import Glibc
import Testing

/// `baton` uses FoundationEssentials only, never a symbol of the full Foundation,
/// FoundationInternationalization or ICU.
///
/// Linked statically (`swift build -c release --static-swift-stdlib`, the build a host runs),
/// one reference to the full Foundation pulls in Foundation, CoreFoundation (whose constructor
/// runs at start), FoundationInternationalization and ICU with its 30 MB of data: a 90 MB
/// binary and about 2 MiB more of the supervisor's resident memory. A single
/// `someString.contains("/")` does it: with Foundation loaded through a dependency's import,
/// overload resolution picks Foundation's `StringProtocol.contains` over the standard library's.
/// The debug build links those libraries dynamically, so the symbols the executable takes from
/// them are visible: none may be needed.
@Suite("FoundationLink")
struct FoundationLinkTests {
    /// The toolchain libraries that must contribute nothing to `baton`.
    static let forbidden = ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so"]

    /// Dynamic symbols of `path`: undefined ones (`-u`) or defined ones.
    static func dynamicSymbols(_ path: String, undefined: Bool) throws -> Set<String> {
        let r = try TestProcess.run(["nm", "-D", undefined ? "--undefined-only" : "--defined-only", path], timeout: .seconds(60))
        try #require(r.code == 0, "nm \(path): \(r.stderr)")
        return Set(r.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) })
    }

    @Test("the baton executable needs no symbol of Foundation, FoundationInternationalization or ICU")
    func essentialsOnly() throws {
        let baton = TestPaths.executable("baton")
        let ldd = try TestProcess.run(["ldd", baton], timeout: .seconds(30))
        try #require(ldd.code == 0, "ldd: \(ldd.stderr)")
        // "\tlibX.so => /path/libX.so (0x...)": where this build maps each library from.
        var paths: [String: String] = [:]
        for line in ldd.stdout.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 3, fields[1] == "=>" { paths[String(fields[0])] = String(fields[2]) }
        }
        // FoundationEssentials is always needed: seeing it proves the listing was read.
        #expect(paths["libFoundationEssentials.so"] != nil, "ldd \(baton): \(ldd.stdout)")
        let needed = try Self.dynamicSymbols(baton, undefined: true)
        for library in Self.forbidden.compactMap({ paths[$0] }) {
            let used = needed.intersection(try Self.dynamicSymbols(library, undefined: false))
            #expect(used.isEmpty, "baton uses \(used.count) symbol(s) of \(library): \(used.sorted().prefix(5))")
        }
    }
}
