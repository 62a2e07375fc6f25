/// The OOM block of `baton status`: the kernel's OOM kills seen in baton's memory cgroup since
/// it started, per slot, and the margin memory plans keep because of them.
public struct OOMStatus: Codable, Sendable, Equatable {
    /// Kills seen, attributed to a slot or not.
    public var kills: Int
    /// Kills per slot ("0", "1" …), slots without any left out.
    public var bySlot: [String: Int]
    /// The most recent kills, oldest first.
    public var recent: [OOMKill]
    /// What memory plans add to their need now because a kill is recent (0 when none is).
    public var marginBytes: UInt64
    /// The counter file read.
    public var counterPath: String?

    enum CodingKeys: String, CodingKey {
        case kills, recent
        case bySlot = "by_slot"
        case marginBytes = "margin_bytes"
        case counterPath = "counter_path"
    }

    /// Creates the block.
    public init(kills: Int, bySlot: [String: Int], recent: [OOMKill], marginBytes: UInt64, counterPath: String?) {
        self.kills = kills
        self.bySlot = bySlot
        self.recent = recent
        self.marginBytes = marginBytes
        self.counterPath = counterPath
    }

    /// `oom kills: 2 (slot 0: 2); last: pid 123 (perl) in slot 0, 12s ago; plans keep +64.0 MiB`;
    /// kills in no worker's tree (a mold, a tool) as `outside the workers: N`, so the parts add
    /// up to the total (a mold audit read 12 kills listed as 6).
    public func line(now: Double) -> String {
        var parts = bySlot.sorted { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }.map { "slot \($0.key): \($0.value)" }
        let outside = kills - bySlot.values.reduce(0, +)
        if outside > 0 { parts.append("outside the workers: \(outside)") }
        var text = "oom kills: \(kills)" + (parts.isEmpty ? "" : " (\(parts.joined(separator: ", ")))")
        if let last = recent.last {
            let place = last.slot.map { "in slot \($0)" } ?? "outside the workers"
            text += "; last: \(last.victim) \(place), \(StatusReport.age(now - last.at)) ago"
        }
        if marginBytes > 0 { text += "; plans keep +\(Units.formatSize(marginBytes))" }
        return text
    }
}
