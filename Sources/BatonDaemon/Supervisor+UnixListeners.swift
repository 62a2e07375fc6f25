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
            // Another socket's file there is no more its own than none (a re-audit: bound at the
            // path after the unit's file was removed, and taken for the listener's own).
            switch Self.unixListenerFile(listener, at: path) {
            case .own(let file): unixListenerFiles[path] = file
            case let lost: sayLostUnixListener(path, lost)
            }
        }
    }

    /// The file at a unix listener's path, as the kernel says which file the socket was bound
    /// to (without `unix_diag`, the file found is taken for its own).
    enum UnixListenerFile: Equatable {
        case own(FileIdentity)
        case removed
        case another

        var isOwn: Bool { if case .own = self { true } else { false } }

        /// What became of the file, in a problem's words.
        var words: String {
            switch self {
            case .own: "is its own"
            case .removed: "was removed"
            case .another: "is another file now (something bound or put there since)"
            }
        }
    }

    /// What is at `path` for `listener`.
    static func unixListenerFile(_ listener: Listener, at path: String) -> UnixListenerFile {
        guard let file = FileIdentity(path: path) else { return .removed }
        guard let bound = Sockets.boundFile(of: listener.fd) else { return .own(file) }
        return Sockets.isBoundFile(file, of: bound) ? .own(file) : .another
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
            sayLostUnixListener(path, now == nil ? .removed : .another)
        }
    }

    private func sayLostUnixListener(_ path: String, _ what: UnixListenerFile) {
        let restart = socketsFromUnit ? "restart the socket unit and baton" : "restart baton"
        let problem = "listening socket unix:\(path): its file \(what.words): no client can connect to it; \(restart) to bind it again"
        lostUnixListeners[path] = problem
        logger.error("\(problem)")
    }
}
