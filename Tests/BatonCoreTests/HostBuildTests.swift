import Foundation
import Testing

/// The host build (`swift build -c release --static-swift-stdlib`: README, `make bench`) builds
/// every regular target, the test helpers under Tests/ too, and the static SDK has no Testing
/// module: a regular target that imports Testing must do it under `#if canImport(Testing)`.
/// (The release build failed with "no such module 'Testing'" when BatonTestTraits did not.)
@Suite("The host build")
struct HostBuildTests {
    /// The regular (non-test) targets whose sources live under Tests/.
    static let helperTargets = ["BatonTestSupport", "BatonTestTraits"]

    @Test("no regular target under Tests/ imports Testing unguarded")
    func helperTargetsGuardTheirTestingImport() throws {
        // This file is Tests/BatonCoreTests/HostBuildTests.swift.
        let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        for target in Self.helperTargets {
            let directory = tests.appendingPathComponent(target)
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".swift") }
            #expect(!files.isEmpty, "\(target)")
            for file in files {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                guard let use = lines.firstIndex(of: "import Testing") else { continue }
                let guarded = lines[..<use].contains("#if canImport(Testing)")
                #expect(guarded, "\(target)/\(file) imports Testing outside #if canImport(Testing)")
            }
        }
    }
}
