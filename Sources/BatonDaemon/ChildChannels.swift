import BatonCore
import BatonSystem
import Glibc

/// The read end of an output pipe baton reads, owned (closed once: when replaced, closed or
/// dropped), with the bytes of an unfinished line and its last lines (all read and logged by
/// one reader, `Supervisor.readOutput`). The base of ``ProcessChannels`` and of
/// ``StrayOutput`` (the strays of a worker gone). Lives on the event-loop thread only.
class OutputChannel {
    /// Read end of its stdout+stderr pipe.
    var ownedOutput: OwnedDescriptor?
    /// Its number (-1: closed). Setting it hands that descriptor to the record and closes the
    /// one it held; -1 closes it.
    var outputFD: Int32 {
        get { ownedOutput?.rawValue ?? -1 }
        set { ownedOutput = newValue >= 0 ? OwnedDescriptor(newValue) : nil }
    }
    /// Bytes of an unfinished output line.
    var outputLines = OutputLines()
    /// The last lines of its output (a worker's or mold's failure reports quote them).
    var recentOutput = RingBuffer<String>(capacity: 20)
    /// The last of its lines that looked like an error, and its number (`recentOutput.appended`
    /// once it was appended): a failure report names it when it scrolled out of `recentOutput`.
    var lastErrorLine: (line: String, number: Int)?

    /// `lastErrorLine`, counted back from its last line, for `FailureOutput.summary`.
    var earlierError: FailureOutput.EarlierError? {
        lastErrorLine.map { FailureOutput.EarlierError(line: $0.line, linesAgo: recentOutput.appended - $0.number) }
    }
}

/// What baton holds of a process it watches and whose output it reads: the process with its
/// pidfd, owned, and its output (``OutputChannel``). The base of ``ChildChannels`` (a worker or
/// a mold) and of ``OrphanWorker`` (a crashed baton's worker). Lives on the event-loop thread
/// only.
class ProcessChannels: OutputChannel {
    /// The process, whose pidfd names exactly it: owned until it is reaped (or gone).
    let process: ChildProcess
    /// Its pid (= its process group id).
    var pid: pid_t { process.pid }
    /// Its pidfd's number; -1 once closed, so nothing signals a number the kernel reused.
    var pidfd: Int32 { process.pidfd }

    /// Holds `process` (and so its pidfd) from now on.
    init(process: ChildProcess) {
        self.process = process
    }
}

/// What baton holds of a child it started and watches, a worker or a mold: besides its pidfd
/// and output pipe (``ProcessChannels``), its notify socket, owned too, and the timers that
/// belong to it. The base of ``Worker`` and ``Mold``, which both
/// start, report and end through these; one teardown for both (`Supervisor.releaseChannels`).
/// Lives on the event-loop thread only.
class ChildChannels: ProcessChannels {
    /// Its NOTIFY_SOCKET (notify mode), owned by baton.
    var ownedNotify: OwnedDescriptor?
    /// Its number (-1: none). Setting it hands that descriptor to the child and closes the one
    /// it held; -1 closes it.
    var notifyFD: Int32 {
        get { ownedNotify?.rawValue ?? -1 }
        set { ownedNotify = newValue >= 0 ? OwnedDescriptor(newValue) : nil }
    }
    /// Path of that socket, removed when the child is gone.
    var notifyPath: String?
    /// Its timers (readiness or start timeout, delays, probes, the kill after the stop signal).
    var timers: [EventLoop.Token] = []
}

extension Supervisor {
    /// A worker's or mold's notify socket bound at `path`: a datagram socket, mode 0600, given
    /// to the child's user when it runs as another, passing credentials, non-blocking. Owned
    /// from the bind: a failure after it closes the socket and removes `path`.
    func bindNotifySocket(at path: String, credentials: Credentials?) throws -> OwnedDescriptor {
        let socket = OwnedDescriptor(try Sockets.bindUnix(path: path, type: Int32(SOCK_DGRAM.rawValue), mode: 0o600))
        do {
            if let credentials { chown(path, credentials.uid, credentials.gid) }
            try CBatonLinuxShim.setPassCredentials(socket.rawValue)
            try setNonBlocking(socket.rawValue)
        } catch {
            unlink(path)
            throw error
        }
        return socket
    }

    /// Registers a worker's or mold's pidfd, output pipe and notify socket with the loop, all
    /// or none: a handler left registered for a record baton then lets go of would run on a
    /// freed child. `exited` runs when the pidfd turns readable, `notified` when a datagram
    /// arrives; both on the loop, the supervisor and the child held unowned.
    func watchChannels<Child: ChildChannels & OutputSource>(
        _ child: Child, exited: @escaping (Supervisor, Child) -> Void, notified: @escaping (Supervisor, Child) -> Void
    ) throws {
        do {
            try loop.register(fd: child.pidfd, events: .readable) { [unowned self, unowned child] _ in exited(self, child) }
            if child.outputFD >= 0 {
                try loop.register(fd: child.outputFD, events: .readable) { [unowned self, unowned child] _ in self.readOutput(child) }
            }
            if child.notifyFD >= 0 {
                try loop.register(fd: child.notifyFD, events: .readable) { [unowned self, unowned child] _ in notified(self, child) }
            }
        } catch {
            unwatch(child)
            throw error
        }
    }

    /// Takes a worker's or mold's pidfd, output pipe and notify socket off the loop (one that
    /// is not registered is left alone).
    func unwatch(_ child: ChildChannels) {
        loop.unregister(fd: child.pidfd)
        if child.outputFD >= 0 { loop.unregister(fd: child.outputFD) }
        if child.notifyFD >= 0 { loop.unregister(fd: child.notifyFD) }
    }

    /// Lets go of what baton held of a child that exited and was reaped: its timers, its pidfd,
    /// its notify socket (and the socket's path), and its output pipe once the rest of its
    /// output was read and logged: up to the pipe's capacity, so the last lines a crashing
    /// worker printed (its error, after a backlog) reach the log and the failure report; a pipe
    /// escaped children of a worker still hold is read on (``handOutputToStrays(of:)``).
    func releaseChannels(_ child: some ChildChannels & OutputSource) {
        for t in child.timers { loop.cancel(t) }
        child.timers.removeAll()
        loop.unregister(fd: child.pidfd)
        child.process.close()  // the child is reaped
        if child.notifyFD >= 0 {
            loop.unregister(fd: child.notifyFD)
            child.notifyFD = -1  // closes it
        }
        if let path = child.notifyPath { unlink(path) }
        if let worker = child as? Worker, handOutputToStrays(of: worker) { return }
        closeOutput(child, draining: WorkerContract.outputPipeCapacity)
    }
}
