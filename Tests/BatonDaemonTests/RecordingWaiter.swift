import BatonCore
@testable import BatonDaemon
import Testing

/// A client of the control socket as the supervisor sees it: progress lines, one final reply.
final class RecordingWaiter: OperationWaiter {
    private(set) var progress: [String] = []
    private(set) var reply: ControlReply?
    func send(_ reply: ControlReply) { progress.append(reply.message ?? "") }
    func finish(_ reply: ControlReply) {
        #expect(self.reply == nil, "a second final reply: \(reply)")
        self.reply = reply
    }
}
