import BatonCore
import BatonSystem
import Glibc

/// The files of unix listening sockets. A socket's file is only its name: removed (`rm`, a
/// tmpfiles clean-up) or replaced by another process's socket bound at the path, the listener
/// goes on in every worker but no client can reach it. A listeners audit: seven seconds after
/// `rm` of the file, status said `2/2 workers ready` with no problem while every connect
/// failed; and a baton stopped after another bound the path unlinked that one's live socket.
extension Supervisor {
    /// The file at each unix listener's path as it is now, for those not recorded at their bind
    /// (a socket unit's, the FD store's, an upgrade's): what the checks and the stop compare with.
    /// A socket passed with no file at its path is said at once (left from a listeners audit:
    /// the file removed under a socket unit, then a restart of the service alone, came up with
    /// `2/2 workers ready` and no problem while every connect failed).
    func recordUnixListenerFiles() {
        for listener in listeners {
            // An abstract socket (`unix:@…`) has no file, and parses as no address.
            guard case .unix(let path)? = ListenAddress.parse(listener.address), unixListenerFiles[path] == nil, lostUnixListeners[path] == nil
            else { continue }
            guard let file = FileIdentity(path: path) else {
                sayLostUnixListener(path, "was removed")
                continue
            }
            // Another socket's file there (a re-audit: bound at the path after the unit's file
            // was removed, and taken for the listener's own).
            if let bound = Sockets.boundFile(of: listener.fd), !Sockets.isBoundFile(file, of: bound) {
                sayLostUnixListener(path, "is another file now (something bound or put there since)")
                continue
            }
            unixListenerFiles[path] = file
        }
    }

    /// Whether the file at `path` is still the one baton recorded for its listener.
    func isOwnUnixListenerFile(_ path: String) -> Bool {
        guard let recorded = unixListenerFiles[path] else { return false }
        return FileIdentity(path: path) == recorded
    }

    /// Says once, and shows in status until baton restarts, each unix listener whose file is
    /// gone or is another file now. baton cannot give the socket its name back (a name is given
    /// only by a bind, of a new socket the workers do not hold).
    func checkUnixListenerFiles() {
        for (path, recorded) in unixListenerFiles where lostUnixListeners[path] == nil {
            let now = FileIdentity(path: path)
            guard now != recorded else { continue }
            sayLostUnixListener(path, now == nil ? "was removed" : "is another file now (something bound or put there since)")
        }
    }

    private func sayLostUnixListener(_ path: String, _ what: String) {
        let restart = socketsFromUnit ? "restart the socket unit and baton" : "restart baton"
        let problem = "listening socket unix:\(path): its file \(what): no client can connect to it; \(restart) to bind it again"
        lostUnixListeners[path] = problem
        logger.error("\(problem)")
    }
}
