import BatonTestSupport
import Foundation
import Testing

/// The host build (`swift build -c release --static-swift-stdlib`: README, `make bench`) builds
/// every regular target, the test helpers under Tests/ too, and the static SDK has no Testing
/// module: a regular target that imports Testing must do it under `#if canImport(Testing)`.
/// (The release build failed with "no such module 'Testing'" when BatonTestTraits did not.)
@Suite("The host build")
struct HostBuildTests {
    /// The package's root.
    static let root = URL(fileURLWithPath: TestPaths.packageRoot)

    /// The regular (non-test) targets whose sources live under Tests/, as the package says:
    /// every folder under Tests/ that is not a test target's (`.testTarget(name: "X"` keeps
    /// its sources in Tests/X), so a helper target added later is covered without a change
    /// here. `manifest` is Package.swift's text, `folders` the names under Tests/.
    static func helperTargets(manifest: String, folders: [String]) -> [String] {
        let testTargets = manifest.matches(of: /\.testTarget\(\s*name:\s*"([^"]+)"/).map { String($0.output.1) }
        return folders.filter { !testTargets.contains($0) }.sorted()
    }

    /// The folders under Tests/ that a regular target names as its `path:` in `manifest`.
    static func declaredHelperPaths(manifest: String) -> [String] {
        manifest.matches(of: /path:\s*"Tests\/([^"\/]+)\/?"/).map { String($0.output.1) }.sorted()
    }

    /// Whether `source` imports Testing outside `#if canImport(Testing)` (false when it does
    /// not import it at all).
    static func importsTestingUnguarded(_ source: String) -> Bool {
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let use = lines.firstIndex(of: "import Testing") else { return false }
        return !lines[..<use].contains("#if canImport(Testing)")
    }

    /// The Swift files under `directory`, at any depth.
    static func swiftFiles(under directory: URL) -> [URL] {
        let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
        return (walker?.allObjects as? [URL] ?? []).filter { $0.pathExtension == "swift" }
    }

    @Test("no regular target under Tests/ imports Testing unguarded")
    func helperTargetsGuardTheirTestingImport() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let tests = Self.root.appendingPathComponent("Tests")
        let folders = try FileManager.default.contentsOfDirectory(atPath: tests.path).filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: tests.appendingPathComponent(name).path, isDirectory: &isDirectory)
                && isDirectory.boolValue
        }
        let helpers = Self.helperTargets(manifest: manifest, folders: folders)
        // Found from the package, and in step with what its regular targets declare.
        #expect(helpers.contains("BatonTestTraits") && helpers.contains("BatonTestSupport"), "\(helpers)")
        #expect(helpers == Self.declaredHelperPaths(manifest: manifest), "every folder under Tests/ that is no test target's is a regular target's path")
        for target in helpers {
            let files = Self.swiftFiles(under: tests.appendingPathComponent(target))
            #expect(!files.isEmpty, "\(target)")
            for file in files {
                let text = try String(contentsOf: file, encoding: .utf8)
                #expect(!Self.importsTestingUnguarded(text), "\(target)/\(file.lastPathComponent) imports Testing outside #if canImport(Testing)")
            }
        }
    }

    /// The check itself: a helper found from a manifest it was never told about, and an
    /// unguarded import caught.
    @Test func theCheckFindsANewHelperTargetAndAnUnguardedImport() {
        let manifest = """
            .target(name: "Lib"),
            .target(
                name: "NewHelper",
                dependencies: ["Lib", .product(name: "X", package: "x")],
                path: "Tests/NewHelper"
            ),
            .testTarget(name: "LibTests", dependencies: ["Lib"]),
            .testTarget(
                name: "MoreTests"
            ),
            """
        let folders = ["LibTests", "MoreTests", "NewHelper"]
        #expect(Self.helperTargets(manifest: manifest, folders: folders) == ["NewHelper"])
        #expect(Self.declaredHelperPaths(manifest: manifest) == ["NewHelper"])
        #expect(Self.importsTestingUnguarded("import Foundation\nimport Testing\n"))
        #expect(!Self.importsTestingUnguarded("#if canImport(Testing)\n    import Testing\n#endif\n"))
        #expect(!Self.importsTestingUnguarded("import Foundation\n"))
    }
}
