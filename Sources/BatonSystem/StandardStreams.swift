import CBatonLinux
import Glibc

/// baton's own descriptors 0, 1 and 2.
public enum StandardStreams {
    /// Opens /dev/null on each of 0, 1 and 2 that is closed, lowest first (each open takes the
    /// lowest free number: the one found closed). Started with them closed (`>&- 2>&-`), baton's
    /// own epoll, eventfd and signalfd took those numbers, and its log lines were written into
    /// them (a pid-1 and a logs audit).
    /// Returns the ones it found closed.
    @discardableResult
    public static func openClosed() -> Set<Int32> {
        var closed: Set<Int32> = []
        for fd in Int32(0)...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            closed.insert(fd)
            let opened = open("/dev/null", O_RDWR)
            if opened >= 0 && opened != fd { close(opened) }  // a lower one is free: not ours to take
        }
        return closed
    }

    /// Why what a command printed on stdout was not all written (a full disk, an I/O error), or
    /// nil: written, or its reader went away (`| head`), which is no error of the command's. A
    /// pid-1 audit: `baton status > /dev/full` exited 0.
    public static func outputFailure() -> String? {
        var error: Int32 = 0
        guard CBatonLinux_flush_stdout(&error) != 0 else { return nil }
        // A pipe or socket whose reader is gone reports POLLERR.
        var peer = pollfd(fd: 1, events: Int16(POLLOUT), revents: 0)
        if poll(&peer, 1, 0) == 1, peer.revents & Int16(POLLERR) != 0 {
            var info = stat()
            if fstat(1, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO || (info.st_mode & S_IFMT) == S_IFSOCK { return nil }
        }
        return error == 0 ? "could not write to stdout" : "could not write to stdout: \(String(cString: strerror(error)))"
    }
}
