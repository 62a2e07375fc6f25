import FoundationEssentials

/// The control socket speaks versioned, line-delimited JSON: one request line
/// from the client, then zero or more `progress` lines and one final reply.
public enum ControlProtocol {
    /// The protocol version this build speaks.
    public static let version = 1
    /// Longest request line accepted.
    public static let maxRequestBytes = 64 * 1024

    /// Verbs that change state (their callers' uids are logged).
    public static let mutatingCommands = Set(ControlCommand.allCases.filter(\.isMutating).map(\.rawValue))
    /// Verbs that only read.
    public static let readOnlyCommands = Set(ControlCommand.allCases.filter { !$0.isMutating }.map(\.rawValue))

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
        guard request.command != nil else {
            return .failure(.init("unknown command \"\(printable(request.cmd))\""))
        }
        if let problem = request.problem() { return .failure(.init("invalid request: \(problem)")) }
        return .success(request)
    }

    /// `s` whole, each hidden character (``isHidden(_:)``) shown as `?`: a path in a line that
    /// must stay one line and leave the terminal alone (a release refused for one, a folder listed).
    public static func withControlsShown(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { isHidden($0) ? "?" : $0 }))
    }

    /// Whether `s` holds a hidden character: what ``withControlsShown(_:)`` shows as `?`.
    public static func hasControls(_ s: String) -> Bool { s.unicodeScalars.contains(where: isHidden) }

    /// A character that changes how the text around it reads rather than showing itself: a
    /// control character (C0, DEL, C1), a line or paragraph separator (U+2028, U+2029) or a
    /// bidirectional formatting character (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
    /// U+061C; a names audit: U+202E reversed a release name in status and in the log).
    public static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: return true
        default: return false
        }
    }

    /// `scalar` as TOML escapes it, `\uXXXX` (uppercase, four digits at least): how config
    /// errors show a hidden character.
    public static func unicodeEscape(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// A client-supplied string made safe for a one-line message: control
    /// characters become '?', and it is cut at 64 characters.
    public static func printable(_ s: String) -> String {
        let cleaned = String(s.unicodeScalars.prefix(64).map { isHidden($0) ? "?" : Character($0) })
        return s.unicodeScalars.count > 64 ? cleaned + "…" : cleaned
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
    /// The verb: status, ping, reload, deploy, rollback, history, attach, preflight, upgrade,
    /// releases, prune-releases.
    public var cmd: String
    /// `cmd` as a verb; nil for a word no verb has (``ControlProtocol/decodeRequest(_:)`` refuses those).
    public var command: ControlCommand? { ControlCommand(rawValue: cmd) }
    /// deploy: the options.
    public var deploy: DeployOptions?
    /// upgrade: the binary to re-execute (nil: baton's own executable).
    public var binary: String?
    /// preflight: the options.
    public var preflight: PreflightOptions?
    /// The app the client meant (its config's `[app] name`, or `--app`): a daemon of another app
    /// refuses the request. nil: any (`--socket`; clients before it, which older daemons'
    /// decoders ignore in turn).
    public var app: String?

    /// Creates a request.
    public init(
        cmd: String, deploy: DeployOptions? = nil, binary: String? = nil, preflight: PreflightOptions? = nil, app: String? = nil,
        v: Int = ControlProtocol.version
    ) {
        self.v = v
        self.cmd = cmd
        self.app = app
        self.deploy = deploy
        self.binary = binary
        self.preflight = preflight
    }
}

/// The options of `baton preflight`.
public struct PreflightOptions: Codable, Sendable, Equatable {
    /// The release about to be deployed (its measured footprint counts, if known).
    public var release: String?
    /// Memory the CI's own tooling needs on the host, like "512MiB".
    public var need: String?
    /// Restart the most bloated workers until the plan fits.
    public var rollAhead: Bool?
    /// With `rollAhead`: how long the daemon keeps `need` free, like "15m".
    public var hold: String?
    /// Release the reservation held (nothing else is done).
    public var releaseReservation: Bool?

    enum CodingKeys: String, CodingKey {
        case release, need, hold
        case rollAhead = "roll_ahead"
        case releaseReservation = "release_reservation"
    }

    /// Creates options.
    public init(
        release: String? = nil, need: String? = nil, rollAhead: Bool? = nil, hold: String? = nil, releaseReservation: Bool? = nil
    ) {
        self.release = release
        self.need = need
        self.rollAhead = rollAhead
        self.hold = hold
        self.releaseReservation = releaseReservation
    }
}

/// The figures of `baton preflight --json`.
public struct PreflightReport: Codable, Sendable, Equatable {
    /// One limit's headroom.
    public struct Limit: Codable, Sendable, Equatable {
        /// "host MemAvailable", "cgroup memory.max", ...
        public var kind: String
        /// Bytes left under it (negative: already over).
        public var availableBytes: Int64

        enum CodingKeys: String, CodingKey {
            case kind
            case availableBytes = "available_bytes"
        }

        /// Creates a limit.
        public init(kind: String, availableBytes: Int64) {
            self.kind = kind
            self.availableBytes = availableBytes
        }
    }

    /// Whether the planned deploy fits.
    public var fits: Bool
    /// The verdict line.
    public var summary: String
    /// surge or replace (auto resolved).
    public var strategy: String
    /// Bytes needed under the binding limit.
    public var needBytes: UInt64
    /// Bytes available under it.
    public var haveBytes: Int64
    /// The binding limit's name.
    public var binding: String
    /// The memory budget and where it comes from (configured, cgroup, MemTotal).
    public var budgetBytes: UInt64
    /// See `budgetBytes`.
    public var budgetSource: String
    /// Sum of the workers' PSS.
    public var workersPSSBytes: UInt64
    /// One new worker's footprint, if known.
    public var footprintBytes: UInt64?
    /// Every limit considered.
    public var limits: [Limit]
    /// Slots restarted by --roll-ahead.
    public var rolledAhead: [Int]?
    /// The reservation held after --roll-ahead, if any.
    public var reservation: ReservationReport?

    enum CodingKeys: String, CodingKey {
        case fits, summary, strategy, binding, limits
        case needBytes = "need_bytes"
        case haveBytes = "have_bytes"
        case budgetBytes = "budget_bytes"
        case budgetSource = "budget_source"
        case workersPSSBytes = "workers_pss_bytes"
        case footprintBytes = "footprint_bytes"
        case rolledAhead = "rolled_ahead"
        case reservation
    }

    /// Creates a report.
    public init(
        fits: Bool, summary: String, strategy: String, needBytes: UInt64, haveBytes: Int64, binding: String, budgetBytes: UInt64,
        budgetSource: String, workersPSSBytes: UInt64, footprintBytes: UInt64?, limits: [Limit], rolledAhead: [Int]?
    ) {
        self.fits = fits
        self.summary = summary
        self.strategy = strategy
        self.needBytes = needBytes
        self.haveBytes = haveBytes
        self.binding = binding
        self.budgetBytes = budgetBytes
        self.budgetSource = budgetSource
        self.workersPSSBytes = workersPSSBytes
        self.footprintBytes = footprintBytes
        self.limits = limits
        self.rolledAhead = rolledAhead
    }
}

/// The options of `baton deploy` (and `rollback`) as sent to the daemon.
public struct DeployOptions: Codable, Sendable, Equatable {
    /// The release folder (deploy); nil for rollback.
    public var release: String?
    /// argv for the new release; nil keeps `[app] command`.
    public var command: [String]?
    /// Extra environment for the new release.
    public var environment: [EnvVar]?
    /// surge | replace | auto; nil: `[deploy] strategy`.
    public var strategy: String?
    /// nil: `[deploy] max_surge`.
    public var maxSurge: Int?
    /// Deadline like "10m"; nil: `[deploy] timeout`.
    public var timeout: String?
    /// Print the plan, change nothing.
    public var dryRun: Bool?
    /// Queue behind a deploy in progress instead of being refused.
    public var wait: Bool?

    enum CodingKeys: String, CodingKey {
        case release, command, environment, strategy, timeout, wait
        case maxSurge = "max_surge"
        case dryRun = "dry_run"
    }

    /// Creates options.
    public init(
        release: String? = nil, command: [String]? = nil, environment: [EnvVar]? = nil, strategy: String? = nil,
        maxSurge: Int? = nil, timeout: String? = nil, dryRun: Bool? = nil, wait: Bool? = nil
    ) {
        self.release = release
        self.command = command
        self.environment = environment
        self.strategy = strategy
        self.maxSurge = maxSurge
        self.timeout = timeout
        self.dryRun = dryRun
        self.wait = wait
    }
}

extension DeployOptions {
    /// `strategy` names no strategy; its text is the one-line error the client gets.
    public struct InvalidStrategy: Error, Sendable, Equatable, CustomStringConvertible {
        /// What the client sent.
        public var value: String
        /// An error for `value`.
        public init(value: String) { self.value = value }
        /// The one-line error.
        public var description: String { "--strategy must be auto, surge or replace, got \"\(value)\"" }
    }

    /// `strategy`, parsed once where the request comes in: nil when not given (the config's).
    public func parsedStrategy() throws(InvalidStrategy) -> DeployStrategy? {
        guard let strategy else { return nil }
        guard let parsed = DeployStrategy(rawValue: strategy) else { throw InvalidStrategy(value: strategy) }
        return parsed
    }
}

/// A request the daemon refused to parse.
public struct ControlProtocolError: Error, Sendable, Equatable {
    /// One-line reason.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
}
