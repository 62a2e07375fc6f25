import BatonCore

/// A client waiting for an operation's result: progress lines as it runs, one final reply.
/// A control connection in baton; a recorder in the tests of BatonDaemon.
protocol OperationWaiter: AnyObject {
    /// Sends a progress line.
    func send(_ reply: ControlReply)
    /// Sends the final reply (the client's exit status follows from it).
    func finish(_ reply: ControlReply)
}

extension ControlConnection: OperationWaiter {}
