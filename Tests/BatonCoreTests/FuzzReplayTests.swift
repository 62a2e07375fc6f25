import BatonTestSupport
import Glibc
import Testing

@testable import BatonCore

/// The committed fuzzing inputs (`Fuzz/corpus`, `Fuzz/crashes`) replayed through the same
/// entry points the fuzzers use, on every `make test`.
@Suite("fuzz corpus replay")
struct FuzzReplayTests {
    @Test("every config input gets one line from the in-process checks, never a crash or a broken invariant")
    func configInputs() {
        let files = FuzzCorpus.files("crashes/config") + FuzzCorpus.files("corpus/config")
        #expect(files.count >= 6)
        for file in files {
            let outcome = FuzzEntry.config(FuzzCorpus.bytes(file))
            #expect(!outcome.hasPrefix(FuzzEntry.bugMarker) && !outcome.contains("\n"), "\(file): \(outcome)")
        }
    }

    @Test("every control input decodes to a request or one error line")
    func controlInputs() {
        let files = FuzzCorpus.files("crashes/control") + FuzzCorpus.files("corpus/control")
        #expect(!files.isEmpty)
        for file in files {
            let outcome = FuzzEntry.control(FuzzCorpus.bytes(file))
            #expect(!outcome.hasPrefix(FuzzEntry.bugMarker) && !outcome.contains("\n"), "\(file): \(outcome)")
        }
    }
}
