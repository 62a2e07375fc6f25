import BatonSystem
import CBatonLinux
import Glibc

/// A child the fake host "spawned": no process, only descriptors. Its pidfd is an eventfd,
/// which turns readable when the test ends the child, as a pidfd does when a process exits
/// (an eventfd, not a pipe: a fork elsewhere in the test process that inherits a pipe's write
/// end would hold its EOF back); it has a dup of the output pipe the supervisor gave it, to
/// print lines.
final class FakeChild {
    /// Its made-up pid (above the kernel's pid_max, so no /proc entry and no real process).
    let pid: pid_t
    /// What it handed to the supervisor as its pidfd (closed by the supervisor).
    let pidfd: Int32
    /// What the supervisor asked for.
    let request: SpawnRequest
    /// How it ended, once it did.
    private(set) var exit: CBatonLinuxShim.Exit?
    /// Whether the supervisor reaped it.
    var reaped = false
    /// Signals it received, in order (group and pidfd signals alike).
    var signals: [Int32] = []
    /// When true, the stop signal does not end it (only SIGKILL does).
    var ignoresStopSignal = false
    /// When true, not even SIGKILL ends it at once (the test ends it): a process the kernel
    /// has not finished killing yet.
    var diesLate = false
    private var output: Int32

    /// `watchable: false` hands over /dev/null as its pidfd, which epoll refuses (EPERM), as it
    /// may refuse a real pidfd (ENOMEM, ENOSPC at max_user_watches): the loop cannot watch it.
    init(pid: pid_t, request: SpawnRequest, watchable: Bool = true) {
        self.pid = pid
        self.pidfd = watchable ? CBatonLinux_eventfd() : open("/dev/null", O_RDONLY | O_CLOEXEC)
        precondition(pidfd >= 0, "eventfd: \(errno)")
        self.request = request
        self.output = request.stdout >= 0 ? fcntl(request.stdout, F_DUPFD_CLOEXEC, 0) : -1
    }

    deinit {
        if output >= 0 { close(output) }
    }

    /// The value of `NAME` in its environment.
    func environment(_ name: String) -> String? {
        request.environment.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    /// The slot of a worker (nil for a probe).
    var slot: Int? { environment("BATON_SLOT").flatMap { Int($0) } }
    /// The release folder it runs in.
    var release: String? { request.directory }
    /// Whether it still runs.
    var isRunning: Bool { exit == nil }

    /// Writes one line of output, as the worker would on stdout.
    func print(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(output, $0.baseAddress, $0.count) }
    }

    /// Ends the child: its pidfd turns readable at the next pump of the loop.
    func end(_ status: CBatonLinuxShim.Exit) {
        guard exit == nil else { return }
        exit = status
        // The supervisor closes the pidfd once it reaped the child; until then it stays readable.
        var one: UInt64 = 1
        _ = write(pidfd, &one, 8)
        if output >= 0 {
            close(output)
            output = -1
        }
    }

    func receive(_ signal: Int32, stopSignal: Int32) {
        signals.append(signal)
        guard exit == nil else { return }
        if signal == SIGKILL {
            if !diesLate { end(.signaled(SIGKILL)) }
        } else if signal == stopSignal, !ignoresStopSignal {
            end(.exited(0))
        }
    }
}
