import FoundationEssentials
import Glibc

/// What a running baton keeps in its runtime directory (`instance.json`,
/// replaced atomically whenever its workers change), so that the next
/// `baton serve` after a crash outside systemd can tell whether it still
/// runs and, if it does not, take the listening sockets over from the
/// workers it left behind. A pid alone could have been reused: each comes
/// with its start time (/proc/PID/stat field 22).
struct InstanceRecord: Codable {
    /// A listening socket, in the order workers received them (fd 3, 4, ...).
    struct ListenerRecord: Codable {
        var name: String
        var address: String
        /// The socket's inode: every process holding it shares the listening socket (nil in
        /// records of older batons).
        var inode: UInt64?
    }

    /// A live worker.
    struct WorkerRecord: Codable {
        var slot: Int
        var pid: Int32
        var startTime: UInt64
        /// Where the worker holds a reader of its own output pipe
        /// (`WorkerContract.outputReaderFD`); nil in records of older batons.
        var outputFD: Int32?
        /// It was told to stop (draining) when the record was written; nil: no.
        var draining: Bool? = nil
    }

    /// Format version of this record.
    var version = 1
    var app: String
    var pid: Int32
    var startTime: UInt64
    var listeners: [ListenerRecord]
    var workers: [WorkerRecord]
    /// Strays it took over and had not killed yet (`TakeOverState/strays`; slot -1, no output
    /// reader); nil in records of older batons.
    var strays: [WorkerRecord]? = nil
    /// Its molds (slot -1): one still loading the application when baton died does not read
    /// its channel yet, so it does not see the end of it; the next baton stops it (nil in
    /// records of older batons).
    var molds: [WorkerRecord]? = nil
}

/// `baton serve` found the baton of the same runtime directory still running.
public struct InstanceConflict: Error, CustomStringConvertible {
    /// One line.
    public var description: String
}

extension Supervisor {
    /// Another app's dead baton left `record` in this runtime directory: refused while any of
    /// its workers runs, else ignored (a day-2 audit: an app whose config shared the runtime
    /// directory took over and drained that app's orphaned workers, and took it down).
    func ignoreOtherAppsRecord(_ record: InstanceRecord) throws {
        let running = record.workers.filter { host.processes.startTime(of: $0.pid) == $0.startTime }.map { String($0.pid) }
        guard running.isEmpty else {
            throw InstanceConflict(
                description:
                    "runtime directory \(runtimeDirectory) holds the record of app \(record.app), whose baton (pid \(record.pid)) is gone and whose workers \(running.joined(separator: ",")) still run: this config is app \(config.app.name); give it a runtime_directory of its own, or start app \(record.app) to take them over"
            )
        }
        logger.info("runtime directory \(runtimeDirectory) held the record of app \(record.app), none of whose workers runs: ignored")
    }

    /// A clean stop: nothing to take over. The record of another baton that runs stays (a
    /// multi-app audit: a baton sharing the runtime directory lost its record to the other's
    /// stop, before the directory's lock kept a second baton out).
    func forgetInstance() {
        takeOver.recordForgotten = true
        if let record = readInstanceRecord().record, isAnotherRunningBaton(record) { return }
        host.files.remove(instancePath)
    }

    /// `instance.json` as read (nil when there is none) and decoded (nil when unreadable).
    func readInstanceRecord() -> (text: String?, record: InstanceRecord?) {
        let text = try? host.files.read(instancePath)
        return (text, text.flatMap { try? JSONDecoder().decode(InstanceRecord.self, from: Data($0.utf8)) })
    }

    /// Whether `record` is another baton's that still runs (same pid and start time).
    func isAnotherRunningBaton(_ record: InstanceRecord) -> Bool {
        record.pid != getpid() && host.processes.startTime(of: record.pid).map { $0 == record.startTime } == true
    }
}
