import FoundationEssentials

/// One line from the daemon: a progress event, or the final reply, which succeeded or failed.
/// Each case carries exactly what its line can hold (a progress line has no verdict, a failure
/// always has its reason, a success at most one command's payload); the line on the wire is the
/// one JSON object clients have always read (`event`, `ok`, `message`, `error`, `code`,
/// `details`, and the payload under the command's key).
public enum ControlReply: Sendable, Equatable {
    /// A progress line (`"event":"progress"`) with its text.
    case progress(String)
    /// The final reply of a command that succeeded.
    case succeeded(Success)
    /// The final reply of a command that failed.
    case failed(Failure)

    /// What a command that succeeded answers.
    public struct Success: Sendable, Equatable {
        /// One-line message.
        public var message: String?
        /// Lines of detail: a plan, a slot table.
        public var details: [String]?
        /// The command's payload, if it has one.
        public var payload: Payload?

        /// Creates a success.
        public init(message: String? = nil, details: [String]? = nil, payload: Payload? = nil) {
            self.message = message
            self.details = details
            self.payload = payload
        }
    }

    /// What a command that failed answers.
    public struct Failure: Sendable, Equatable {
        /// The one-line reason.
        public var error: String
        /// The exit code the CLI should use (1, 2, 3 or 4); nil: 1.
        public var code: Int32?
        /// Lines of detail: a failing worker's last output.
        public var details: [String]?
        /// `preflight`: the figures behind a verdict that does not fit.
        public var preflight: PreflightReport?

        /// Creates a failure.
        public init(error: String, code: Int32? = nil, details: [String]? = nil, preflight: PreflightReport? = nil) {
            self.error = error
            self.code = code
            self.details = details
            self.preflight = preflight
        }
    }

    /// The payload of one command's successful reply, under that command's key on the wire.
    public enum Payload: Sendable, Equatable {
        /// `status` (key `status`).
        case status(StatusReport)
        /// `history`, oldest first (key `history`).
        case history([HistoryEntry])
        /// `preflight` (key `preflight`).
        case preflight(PreflightReport)
        /// `releases` and `prune-releases` (key `releases`).
        case releases(ReleasesReport)
    }

    /// A final success.
    public static func success(_ message: String? = nil, details: [String]? = nil, payload: Payload? = nil) -> ControlReply {
        .succeeded(Success(message: message, details: details, payload: payload))
    }

    /// A final failure; `code` is the CLI's exit code (1 when nil).
    public static func failure(_ error: String, code: Int32? = nil, details: [String]? = nil, preflight: PreflightReport? = nil) -> ControlReply {
        .failed(Failure(error: error, code: code, details: details, preflight: preflight))
    }
}

extension ControlReply {
    /// "progress" on a progress line; nil on a final reply.
    public var event: String? {
        if case .progress = self { return "progress" }
        return nil
    }
    /// Whether a final reply succeeded; nil on a progress line.
    public var ok: Bool? {
        switch self {
        case .progress: nil
        case .succeeded: true
        case .failed: false
        }
    }
    /// The progress text, or a success's message.
    public var message: String? {
        switch self {
        case .progress(let text): text
        case .succeeded(let s): s.message
        case .failed: nil
        }
    }
    /// A failure's reason.
    public var error: String? {
        if case .failed(let f) = self { return f.error }
        return nil
    }
    /// A failure's exit code, if it named one.
    public var code: Int32? {
        if case .failed(let f) = self { return f.code }
        return nil
    }
    /// A final reply's lines of detail.
    public var details: [String]? {
        switch self {
        case .progress: nil
        case .succeeded(let s): s.details
        case .failed(let f): f.details
        }
    }
    /// `status`'s report.
    public var status: StatusReport? {
        if case .succeeded(let s) = self, case .status(let report)? = s.payload { return report }
        return nil
    }
    /// `history`'s entries.
    public var history: [HistoryEntry]? {
        if case .succeeded(let s) = self, case .history(let entries)? = s.payload { return entries }
        return nil
    }
    /// `preflight`'s figures, whether it fits or not.
    public var preflight: PreflightReport? {
        switch self {
        case .succeeded(let s):
            if case .preflight(let report)? = s.payload { return report }
            return nil
        case .failed(let f): return f.preflight
        case .progress: return nil
        }
    }
    /// `releases`' and `prune-releases`' report.
    public var releases: ReleasesReport? {
        if case .succeeded(let s) = self, case .releases(let report)? = s.payload { return report }
        return nil
    }
}

extension ControlReply: Codable {
    private enum CodingKeys: String, CodingKey {
        case v, event, ok, message, error, code, details, status, history, preflight, releases
    }

    /// The one reply object on the wire: only the keys the case has.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ControlProtocol.version, forKey: .v)
        switch self {
        case .progress(let text):
            try c.encode("progress", forKey: .event)
            try c.encode(text, forKey: .message)
        case .succeeded(let s):
            try c.encode(true, forKey: .ok)
            try c.encodeIfPresent(s.message, forKey: .message)
            try c.encodeIfPresent(s.details, forKey: .details)
            switch s.payload {
            case .status(let report)?: try c.encode(report, forKey: .status)
            case .history(let entries)?: try c.encode(entries, forKey: .history)
            case .preflight(let report)?: try c.encode(report, forKey: .preflight)
            case .releases(let report)?: try c.encode(report, forKey: .releases)
            case nil: break
            }
        case .failed(let f):
            try c.encode(false, forKey: .ok)
            try c.encode(f.error, forKey: .error)
            try c.encodeIfPresent(f.code, forKey: .code)
            try c.encodeIfPresent(f.details, forKey: .details)
            try c.encodeIfPresent(f.preflight, forKey: .preflight)
        }
    }

    /// Reads a reply line: `event` makes a progress line, else `ok` says which final reply it
    /// is; a line with neither is not a reply, nor is one without `v`, which every baton has
    /// sent since its first version (a re-audit: a peer answering `{"ok": true}` made `baton
    /// deploy` print "done" and exit 0).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard c.contains(.v) else {
            throw DecodingError.keyNotFound(CodingKeys.v, .init(codingPath: [], debugDescription: "a reply line has no \"v\""))
        }
        if try c.decodeIfPresent(String.self, forKey: .event) != nil {
            self = .progress(try c.decodeIfPresent(String.self, forKey: .message) ?? "")
            return
        }
        guard let ok = try c.decodeIfPresent(Bool.self, forKey: .ok) else {
            throw DecodingError.dataCorruptedError(forKey: .ok, in: c, debugDescription: "a reply line has neither \"event\" nor \"ok\"")
        }
        let details = try c.decodeIfPresent([String].self, forKey: .details)
        let preflight = try c.decodeIfPresent(PreflightReport.self, forKey: .preflight)
        if !ok {
            self = .failed(
                Failure(
                    error: try c.decodeIfPresent(String.self, forKey: .error) ?? "no reason given",
                    code: try c.decodeIfPresent(Int32.self, forKey: .code), details: details, preflight: preflight))
            return
        }
        var payload: Payload?
        if let report = try c.decodeIfPresent(StatusReport.self, forKey: .status) {
            payload = .status(report)
        } else if let entries = try c.decodeIfPresent([HistoryEntry].self, forKey: .history) {
            payload = .history(entries)
        } else if let preflight {
            payload = .preflight(preflight)
        } else if let report = try c.decodeIfPresent(ReleasesReport.self, forKey: .releases) {
            payload = .releases(report)
        }
        self = .succeeded(Success(message: try c.decodeIfPresent(String.self, forKey: .message), details: details, payload: payload))
    }
}
