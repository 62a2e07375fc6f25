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
}
