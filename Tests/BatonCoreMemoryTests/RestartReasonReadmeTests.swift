import BatonCore
import BatonTestSupport
import Foundation
import Testing

/// The README's metrics table names every restart reason the daemon counts (each is exported
/// from 0), and nothing else: a reason added to the code without its row fails here.
@Suite struct RestartReasonReadmeTests {
    /// The README at the repository's root.
    static func readme() throws -> String {
        try String(contentsOf: URL(fileURLWithPath: TestPaths.packageRoot + "/README.md"), encoding: .utf8)
    }

    /// The backquoted names in the labels cell of `metric`'s row, but the label's own name.
    static func documentedValues(_ readme: String, metric: String = "baton_restarts_total", label: String = "reason") -> [String] {
        guard let row = readme.split(separator: "\n").first(where: { $0.hasPrefix("| `\(metric)` |") }) else { return [] }
        let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let labels = cells.last else { return [] }
        return labels.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            .filter { $0 != label }
    }

    @Test func theMetricsTableListsEveryReasonAsItsRawValue() throws {
        let documented = Self.documentedValues(try Self.readme())
        #expect(documented == RestartReason.allCases.map(\.rawValue))
    }

    /// The prose list after "counted with its reason (" names every reason too (it had left
    /// out `rollback`, `manual`, `readiness-timeout` and `start-failed`).
    @Test func theRestartListInProseNamesEveryReason() throws {
        let readme = try Self.readme().replacingOccurrences(of: "\n", with: " ")
        let start = try #require(readme.range(of: "counted with its reason ("))
        let list = readme[start.upperBound...].prefix { $0 != ")" }
        let named = list.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        #expect(named.sorted() == RestartReason.allCases.map(\.rawValue).sorted())
    }

    @Test func theMetricsTableListsEveryFinishedOutcome() throws {
        let documented = Self.documentedValues(try Self.readme(), metric: "baton_deploys_total", label: "outcome")
        #expect(documented == OperationOutcome.finished.map(\.rawValue))
    }

    @Test func aHistoryEntryKeepsItsRecordedJSON() throws {
        let recorded =
            #"{"kind":"deploy","release":"\/srv\/r2","previous_release":"\/srv\/r1","outcome":"rolled-back","detail":"x","#
            + #""started_at":5,"duration":1,"uid":0}"#
        let entry = try JSONDecoder().decode(HistoryEntry.self, from: Data(recorded.utf8))
        #expect(entry.outcome == .rolledBack)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let again = String(decoding: try encoder.encode(entry), as: UTF8.self)
        #expect(again.contains(#""outcome":"rolled-back""#))
        #expect(try JSONDecoder().decode(HistoryEntry.self, from: Data(again.utf8)) == entry)
        for outcome in OperationOutcome.allCases { #expect("\(outcome)" == outcome.rawValue) }
    }
}
