/// The memory reservation a `baton preflight --roll-ahead` left held: in `baton status`,
/// `preflight --json` and the metrics.
public struct ReservationReport: Codable, Sendable, Equatable {
    /// Bytes kept free (`--need`).
    public var bytes: UInt64
    /// `[memory] reservation_margin` kept on top.
    public var marginBytes: UInt64
    /// Seconds of hold left.
    public var remainingSeconds: Double
    /// Workers rolled to keep it while it was held.
    public var rolls: Int
    /// The headroom now (the tightest limit).
    public var headroomBytes: Int64?
    /// The headroom under which the next worker is rolled.
    public var triggerBytes: UInt64?

    enum CodingKeys: String, CodingKey {
        case bytes, rolls
        case marginBytes = "margin_bytes"
        case remainingSeconds = "remaining_seconds"
        case headroomBytes = "headroom_bytes"
        case triggerBytes = "trigger_bytes"
    }

    /// Creates a report.
    public init(
        bytes: UInt64, marginBytes: UInt64, remainingSeconds: Double, rolls: Int, headroomBytes: Int64? = nil,
        triggerBytes: UInt64? = nil
    ) {
        self.bytes = bytes
        self.marginBytes = marginBytes
        self.remainingSeconds = remainingSeconds
        self.rolls = rolls
        self.headroomBytes = headroomBytes
        self.triggerBytes = triggerBytes
    }

    /// The line of `baton status` and of `preflight`:
    /// `reservation: 300.0 MiB held (+ 64.0 MiB margin), 14m58s left, 1 worker rolled while held; headroom 512.0 MiB, next roll under 390.0 MiB`.
    public var line: String {
        let left = Units.formatDuration(.seconds(Int64(remainingSeconds.rounded())))
        var text =
            "reservation: \(Units.formatSize(bytes)) held (+ \(Units.formatSize(marginBytes)) margin), \(left) left, \(rolls) worker\(rolls == 1 ? "" : "s") rolled while held"
        if let headroomBytes, let triggerBytes {
            // Not Units.formatSignedSize: the fuzz build compiles Control/ without Memory/.
            let headroom = headroomBytes < 0 ? "-" + Units.formatSize(headroomBytes.magnitude) : Units.formatSize(UInt64(headroomBytes))
            text += "; headroom \(headroom), next roll under \(Units.formatSize(triggerBytes))"
        }
        return text
    }
}
