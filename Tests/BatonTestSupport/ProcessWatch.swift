import BatonCore
import BatonSystem
import CBatonLinux
import Glibc

/// Watches processes the test did not start (or that stopped being its children): a
/// pidfd names exactly one process and becomes readable when it exits, whoever reaps it.
public enum ProcessWatch {
    /// A pidfd for `pid`, or -1 when it is gone.
    public static func open(_ pid: pid_t) -> Int32 { CBatonLinux_pidfd_open(pid) }

    /// Waits up to `timeout` for the process behind `pidfd` to exit; true once it has.
    public static func waitExit(_ pidfd: Int32, timeout: Duration) -> Bool {
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.components.seconds * 1000)
        while true {
            let r = poll(&p, 1, ms)
            if r < 0 && errno == EINTR { continue }
            return r == 1
        }
    }

    /// The children of `pid` that run: a zombie is left out (baton reaps on a thread of its own,
    /// a moment after it handled an exit).
    public static func liveChildren(of pid: pid_t) -> [pid_t] {
        ProcFS.children(of: pid).filter { child in
            guard let text = ProcFS.read("/proc/\(child)/stat"), let stat = ProcParsers.statFields(text) else { return false }
            return stat.state != "Z"
        }
    }

    /// Waits up to `timeout` until `pid` is gone from `/proc`, reaped (a zombie is not: baton
    /// reaps on a thread of its own, a moment after it handled the exit); true once it is.
    public static func waitReaped(_ pid: pid_t, timeout: Duration) -> Bool {
        let deadline = monotonicNow() + timeout
        while ProcFS.startTime(of: pid) != nil {
            if monotonicNow() >= deadline { return false }
            pause(.milliseconds(20))
        }
        return true
    }
}
