import BatonCore
import Foundation
import Testing

/// The README's metrics table names every restart reason the daemon counts (each is exported
/// from 0), and nothing else: a reason added to the code without its row fails here.
@Suite struct RestartReasonReadmeTests {
    /// The README at the repository's root (this file is Tests/BatonCoreTests/…).
    static func readme(filePath: String = #filePath) throws -> String {
        let root = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    }

    /// The backquoted names in the `reason` cell of the `baton_restarts_total` row.
    static func documentedReasons(_ readme: String) -> [String] {
        guard let row = readme.split(separator: "\n").first(where: { $0.hasPrefix("| `baton_restarts_total` |") }) else { return [] }
        let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let labels = cells.last else { return [] }
        return labels.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            .filter { $0 != "reason" }
    }

    @Test func theMetricsTableListsEveryReasonAsItsRawValue() throws {
        let documented = Self.documentedReasons(try Self.readme())
        #expect(documented == RestartReason.allCases.map(\.rawValue))
    }
}
