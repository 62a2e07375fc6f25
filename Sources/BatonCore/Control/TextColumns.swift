/// Rows of cells as lines whose columns line up: each column as wide as its widest cell
/// (or `minimumWidths`), two spaces between columns, the last column not padded. The
/// tables `baton status` and `baton releases` print.
public enum TextColumns {
    /// One line per row.
    public static func lines(_ rows: [[String]], minimumWidths: [Int] = []) -> [String] {
        var widths = minimumWidths
        for row in rows {
            for (i, cell) in row.enumerated() {
                if i == widths.count { widths.append(0) }
                widths[i] = max(widths[i], cell.count)
            }
        }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ")
        }
    }
}
