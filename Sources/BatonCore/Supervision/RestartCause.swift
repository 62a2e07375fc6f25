/// Why a slot last restarted: the ``RestartReason`` it is counted under (metrics, logs) and,
/// for a failed start, the text `baton status` shows in its place ("exited during start", the
/// spawn error), so a failure keeps its words while the counter keeps a bounded label.
public struct RestartCause: Sendable, Equatable, Codable, ExpressibleByStringLiteral {
    /// What the restart counts as.
    public var reason: RestartReason
    /// Shown instead of the reason's name, if set.
    public var detail: String?

    /// A restart that shows as its reason's name.
    public init(_ reason: RestartReason, detail: String? = nil) {
        self.reason = reason
        self.detail = detail
    }

    /// A worker that exited before it became ready: counted as a crash.
    public static let exitedDuringStart = RestartCause(.crash, detail: "exited during start")

    /// A worker whose process could not be spawned (`error`: why).
    public static func spawnFailed(_ error: String) -> RestartCause { RestartCause(.startFailed, detail: error) }

    /// What `baton status` shows (`last_restart_reason`).
    public var text: String { detail ?? reason.rawValue }

    /// The cause a status text stands for (as an older daemon hands it over in an upgrade):
    /// a reason's name is that reason; "exited …" a crash; any other text a failed spawn.
    public init(text: String) {
        if let reason = RestartReason(rawValue: text) {
            self.init(reason)
        } else if text.hasPrefix("exited") {
            self.init(.crash, detail: text)
        } else {
            self.init(.startFailed, detail: text)
        }
    }

    /// A cause written as its status text, as ``init(text:)`` reads it: `"crash"` is
    /// `RestartCause(.crash)` (how tests compare a status row's reason with its wire text).
    public init(stringLiteral text: String) { self.init(text: text) }

    /// Encodes as its ``text`` (`last_restart_reason` in `baton status --json`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(text)
    }

    /// Decodes a ``text`` back into its cause (``init(text:)``).
    public init(from decoder: any Decoder) throws {
        self.init(text: try decoder.singleValueContainer().decode(String.self))
    }
}
