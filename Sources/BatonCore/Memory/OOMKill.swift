/// One kernel OOM kill baton saw in its memory cgroup.
public struct OOMKill: Sendable, Equatable, Codable {
    /// The victim's pid, when the kernel log named it (or the victim was a worker's top process).
    public var pid: Int32?
    /// The victim's command name (`comm`), when known.
    public var comm: String?
    /// The slot whose process tree held the victim; nil when it was outside every worker's tree
    /// (another process in baton's cgroup) or could not be attributed.
    public var slot: Int?
    /// True when the victim was the slot's top process (the worker baton started) itself.
    public var topProcess: Bool
    /// When it was seen (seconds since the epoch).
    public var at: Double

    enum CodingKeys: String, CodingKey {
        case pid, comm, slot, at
        case topProcess = "top_process"
    }

    /// Creates a record.
    public init(pid: Int32?, comm: String?, slot: Int?, topProcess: Bool = false, at: Double) {
        self.pid = pid
        self.comm = comm
        self.slot = slot
        self.topProcess = topProcess
        self.at = at
    }

    /// `pid 123 (python3)`, `an unnamed process` when the kernel log was not readable.
    public var victim: String {
        guard let pid else { return "an unnamed process" }
        return "pid \(pid)" + (comm.map { " (\($0))" } ?? "")
    }
}

/// The victim of one kernel OOM kill as the kernel log states it:
/// `Memory cgroup out of memory: Killed process 28880 (python3) total-vm:…` (or
/// `Out of memory: Killed process …` for a host-wide OOM).
public struct OOMKillMessage: Sendable, Equatable {
    /// The victim's pid.
    public var pid: Int32
    /// Its command name.
    public var comm: String

    /// Creates a message.
    public init(pid: Int32, comm: String) {
        self.pid = pid
        self.comm = comm
    }

    /// Parses one kernel log record (a `/dev/kmsg` record `PRI,SEQ,TIME,FLAGS;TEXT` or a bare
    /// text line); nil unless it announces a kill.
    public static func parse(_ record: some StringProtocol) -> OOMKillMessage? {
        guard let marker = record.firstRange(of: "Killed process ") else { return nil }
        let rest = record[marker.upperBound...]
        let digits = rest.prefix { $0.isNumber }
        guard let pid = Int32(digits), pid > 0 else { return nil }
        let afterPID = rest.dropFirst(digits.count)
        guard afterPID.hasPrefix(" ("), let close = afterPID.firstIndex(of: ")") else {
            return OOMKillMessage(pid: pid, comm: "")
        }
        // comm is at most 15 bytes and may hold spaces or ')': take up to the last ") " after it.
        let tail = afterPID.dropFirst(2)
        let end = tail.firstRange(of: ") total-vm")?.lowerBound ?? close
        return OOMKillMessage(pid: pid, comm: String(tail[..<end]))
    }
}
