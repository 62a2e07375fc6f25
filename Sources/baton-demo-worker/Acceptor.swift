import Glibc

/// The accept loop: one thread polls every listening socket and the drain pipe, and hands
/// each accepted connection to a thread of its own.
///
/// It stops polling the listeners as soon as the drain begins. It does not close them: they
/// are shared with baton and the other workers, and closing our copy would change nothing for
/// the connections still queued in the backlog, which the other workers (or the next ones)
/// accept.
struct Acceptor: Sendable {
    let listeners: [Int32]
    let server: Server

    /// Starts the accept thread; exits the process if it cannot.
    func start() {
        server.state.acceptorStarted()
        let result = spawnDetachedThread(stackSize: 256 * 1024) { [self] in
            run()
            server.state.acceptorStopped()
        }
        if result != 0 { fail("cannot start the accept thread: \(errorText(result))", status: 1) }
    }

    private func run() {
        var polled = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        polled.append(pollfd(fd: server.state.drainPipe.read, events: Int16(POLLIN), revents: 0))
        var reportedError: Int32 = 0
        while true {
            let ready = poll(&polled, nfds_t(polled.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                log("poll: \(errorText(errno))")
                sleepNanos(10_000_000)
                continue
            }
            if polled[polled.count - 1].revents != 0 { return }  // draining
            for index in 0..<(polled.count - 1) where polled[index].revents != 0 {
                if polled[index].revents & Int16(POLLNVAL) != 0 {
                    log("listening fd \(polled[index].fd) is no longer open: dropped")
                    polled[index].fd = -1  // poll(2) skips negative fds
                    continue
                }
                let error = acceptOne(polled[index].fd)
                // Report an error once per run of it, and back off when out of fds, where the
                // socket stays readable and the loop would spin.
                if error != 0 && error != reportedError { log("accept: \(errorText(error))") }
                reportedError = error
                if error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM {
                    sleepNanos(50_000_000)
                }
            }
        }
    }

    /// Accepts one connection (if this worker wins it) and starts its thread; returns 0 or the
    /// errno of a real failure.
    private func acceptOne(_ listener: Int32) -> Int32 {
        // Glibc's module does not export accept4; this process never execs, so setting
        // FD_CLOEXEC afterwards is only hygiene. On Linux the accepted socket does not inherit
        // O_NONBLOCK from the listener: connection threads use blocking I/O.
        guard let (fd, acceptError) = server.state.accept(listener) else { return 0 }
        if fd < 0 {
            switch acceptError {
            case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED, EPROTO: return 0  // another worker won, or the peer left
            case let error: return error
            }
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1  // each response is one write: no reason to wait for a delayed ACK
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        let server = self.server
        let result = spawnDetachedThread {
            let connection = Connection(fd: fd, server: server)
            connection.run()
            close(fd)
            server.state.connectionClosed(busy: connection.isBusy)
        }
        if result != 0 {
            close(fd)
            server.state.connectionClosed(busy: true)
            return result
        }
        return 0
    }
}
