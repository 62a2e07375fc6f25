import FoundationEssentials

/// The control socket speaks versioned, line-delimited JSON: one request line
/// from the client, then zero or more `progress` lines and one final reply.
public enum ControlProtocol {
    /// The protocol version this build speaks.
    public static let version = 1
    /// Longest request line accepted.
    public static let maxRequestBytes = 64 * 1024

    /// Verbs that change state (their callers' uids are logged).
    public static let mutatingCommands: Set<String> = ["reload"]
    /// Verbs that only read.
    public static let readOnlyCommands: Set<String> = ["status", "ping"]

    /// Decodes one request line or says, in one line, why not.
    public static func decodeRequest(_ line: [UInt8]) -> Result<ControlRequest, ControlProtocolError> {
        guard line.count <= maxRequestBytes else { return .failure(.init("request too large (over \(maxRequestBytes) bytes)")) }
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch {
            return .failure(.init("malformed request: expected one JSON object like {\"v\":1,\"cmd\":\"status\"}"))
        }
        guard request.v == version else {
            return .failure(.init("unsupported protocol version \(request.v) (this baton speaks \(version))"))
        }
        guard mutatingCommands.contains(request.cmd) || readOnlyCommands.contains(request.cmd) else {
            return .failure(.init("unknown command \"\(request.cmd)\""))
        }
        return .success(request)
    }

    /// Encodes a message as one line (with the trailing newline).
    public static func encodeLine<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{\"v\":1,\"ok\":false,\"error\":\"encoding failed\"}".utf8)
        return Array(data) + [0x0A]
    }
}

/// A request from a client.
public struct ControlRequest: Codable, Sendable, Equatable {
    /// Protocol version.
    public var v: Int
    /// The verb: status, ping, reload.
    public var cmd: String

    /// Creates a request.
    public init(cmd: String, v: Int = ControlProtocol.version) {
        self.v = v
        self.cmd = cmd
    }
}

/// One line from the daemon: a progress event (`event` set) or the final reply.
public struct ControlReply: Codable, Sendable, Equatable {
    /// Protocol version.
    public var v: Int = ControlProtocol.version
    /// Set on progress lines ("progress"); nil on the final reply.
    public var event: String?
    /// Final replies: whether the command succeeded.
    public var ok: Bool?
    /// One-line message (progress text, or the reason of a failure).
    public var message: String?
    /// A one-line error (final replies that failed).
    public var error: String?
    /// `status` payload.
    public var status: StatusReport?

    /// Creates a line.
    public init(event: String? = nil, ok: Bool? = nil, message: String? = nil, error: String? = nil, status: StatusReport? = nil) {
        self.event = event
        self.ok = ok
        self.message = message
        self.error = error
        self.status = status
    }

    /// A progress line.
    public static func progress(_ message: String) -> ControlReply { ControlReply(event: "progress", message: message) }
    /// A final failure.
    public static func failure(_ error: String) -> ControlReply { ControlReply(ok: false, error: error) }
    /// A final success.
    public static func success(_ message: String? = nil, status: StatusReport? = nil) -> ControlReply {
        ControlReply(ok: true, message: message, status: status)
    }
}

/// A request the daemon refused to parse.
public struct ControlProtocolError: Error, Sendable, Equatable {
    /// One-line reason.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
}
