import BatonTestSupport
import BatonTestTraits
import Testing

/// Runs a suite on one `PrivateBinaries` copy: inside it, `TestPaths.executable` names the
/// copies, so every baton, worker and CLI the suite's tests start (through the harness or
/// by path) maps no file page of the build's binaries or of the toolchain's Swift
/// libraries. The copy is made when the suite starts and removed when it ends.
///
/// The suite's scope runs on a thread of its own (`ThreadExecutor`), like the chains' tests:
/// on the cooperative pool, which the unit tests fill when the run starts, the 0.3 s copy
/// (or, with only the copy on a thread, the hop back to the pool after it) held the memory
/// chain's first test back about 5 s.
struct PrivateBinariesTrait: SuiteTrait, TestScoping {
    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await ThreadExecutor.run {
            let binaries = try PrivateBinaries()
            defer { binaries.remove() }
            try await TestPaths.$binaries.withValue(binaries) { try await function() }
        }
    }
}

extension Trait where Self == PrivateBinariesTrait {
    /// The suite's tests start baton and its workers from private copies (`PrivateBinariesTrait`).
    static var privateBinaries: Self { PrivateBinariesTrait() }
}
