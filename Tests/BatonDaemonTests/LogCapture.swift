import Logging
import Synchronization

/// The lines a supervisor logged (`DaemonHarness.log`): "LEVEL message", in order.
final class LogCapture: Sendable {
    private let recorded = Mutex<[String]>([])

    /// Every line so far.
    var lines: [String] { recorded.withLock { $0 } }

    /// The lines that contain `text`.
    func lines(containing text: String) -> [String] { lines.filter { $0.contains(text) } }

    /// Forgets what was logged so far.
    func clear() { recorded.withLock { $0.removeAll() } }

    /// The handler that records into a capture.
    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.recorded.withLock { $0.append("\(event.level.rawValue.uppercased()) \(event.message)") }
        }
    }
}
