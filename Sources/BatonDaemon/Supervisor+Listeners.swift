import BatonCore
import BatonSystem
import Glibc

/// The listening sockets at start-up: a socket unit's, systemd's FD store's, or bound here.
extension Supervisor {
    /// Sockets from a socket unit are used as they are. Without one, baton
    /// binds `[listen] addresses` and hands them to systemd's FD store, so a
    /// restart (or a crash with Restart=on-failure) gets the same sockets back
    /// and clients queue in the backlog meanwhile. Stored sockets whose
    /// address left the config are removed from the store.
    func openListeners() throws -> [Listener] {
        // A unit passing what baton cannot serve is a setup mistake: exit 2 (the shipped unit
        // does not restart on it), not 1 (a scale audit: ListenDatagram= beside ListenStream=).
        let activated: [Listener]
        do { activated = try Sockets.activated() } catch { throw DaemonError("\(error)", exitCode: 2) }
        let fromUnit = activated.filter { !$0.name.hasPrefix(Sockets.boundPrefix) }
        let stored = activated.filter { $0.name.hasPrefix(Sockets.boundPrefix) }
        if !fromUnit.isEmpty {
            logger.info("received \(fromUnit.count) socket(s) from systemd")
            socketsFromUnit = true
            // Shown in status too (a listeners audit: `systemctl restart` returned 0, one WARN,
            // and status listed the unit's sockets with no word of the configured ones).
            if let mismatch = Self.listenMismatch(configured: config.listen.addresses, passed: fromUnit.map(\.address)) { logger.warning("\(mismatch)") }
            // Dropped with `activated` when this returns, which closes them.
            for extra in stored { notifier.removeStoredFD(name: extra.name) }
            return fromUnit
        }
        guard !config.listen.addresses.isEmpty else {
            guard stored.isEmpty else {
                throw DaemonError(
                    "no listening socket: listen.addresses is empty, and systemd passed only sockets named like the ones baton keeps in its FD store "
                        + "(\(stored.map(\.name).joined(separator: ", "))): a socket unit's FileDescriptorName= must not begin with \"\(Sockets.boundPrefix)\"",
                    exitCode: 2)
            }
            throw DaemonError("no listening socket: not socket-activated and listen.addresses is empty", exitCode: 2)
        }
        // A systemd audit: a socket unit's socket named bound-… on an address of [listen] was
        // taken for a stale stored one and closed, and the bind of that address then failed
        // while the unit held it (exit 1, restarted until systemd gave up). baton stores each
        // socket under its own address's name, so this one is the unit's.
        let ours =
            "names that begin with \"\(Sockets.boundPrefix)\" are baton's own, for the sockets it binds itself and keeps in systemd's FD store; "
            + "give the socket unit another FileDescriptorName="
        for socket in stored {
            if let address = config.listen.addresses.first(where: { $0.description == socket.address }), Sockets.fdName(for: address) != socket.name {
                throw DaemonError("systemd passed a socket named \"\(socket.name)\" on \(socket.address), an address of [listen]: \(ours)", exitCode: 2)
            }
            // A re-audit: the stored name of a [listen] address on another port was served
            // silently, and the configured port refused connections.
            if let address = config.listen.addresses.first(where: { Sockets.fdName(for: $0) == socket.name }), socket.address != address.description,
                address.fixedPort
            {
                throw DaemonError(
                    "systemd passed a socket named \"\(socket.name)\" on \(socket.address), not on \(address), the address that name stands for: \(ours)",
                    exitCode: 2)
            }
        }
        // Under systemd the sockets come back from the FD store and the cgroup kill took the old workers.
        if stored.isEmpty { adoptOrphans() }
        var result: [Listener] = []
        var reused = Set<String>()
        var removed = Set<String>()
        for address in config.listen.addresses {
            let name = Sockets.fdName(for: address)
            if let kept = stored.first(where: { $0.name == name }), !reused.contains(name) {
                // A unix socket whose file went while baton was stopped has no name a client
                // can reach: removed from the store (before its new one goes in under the same
                // name) and bound again (left from a listeners audit).
                // Another process's live socket at the path is left alone: the stored one serves
                // on, shown as a problem (a re-audit: removed from the store, its bind failed,
                // `Address already in use`, exit 1).
                if case .unix(let path) = address, !Self.unixListenerFile(kept, at: path).isOwn, !Sockets.unixSocketAnswers(path) {
                    logger.warning("the socket systemd's FD store kept for \(address) is not the file at \(path) any more (removed or replaced): bound again")
                    notifier.removeStoredFD(name: name)
                    removed.insert(name)
                } else {
                    reused.insert(name)
                    result.append(kept)
                    continue
                }
            }
            let listener = try takeOver.taken.removeValue(forKey: name) ?? bindListener(address)
            result.append(listener)
            if notifier.storeFD(listener.fd, name: listener.name) {
                logger.info("stored \(listener.address) in systemd's FD store as \(listener.name)")
            } else if case .unix(let path) = address {
                ownedUnixPaths.append(path)
                unixListenerFiles[path] = FileIdentity(path: path)
            }
        }
        takeOver.taken.removeAll()  // closes the unused ones: their address left the config
        for old in stored where !reused.contains(old.name) && !removed.contains(old.name) {
            logger.info("removing \(old.name) from the FD store: no longer in listen.addresses")
            notifier.removeStoredFD(name: old.name)  // closed when `stored` is dropped
        }
        if !reused.isEmpty {
            logger.info("received \(reused.count) socket(s) back from systemd's FD store")
        }
        return result
    }

    /// Says once at start when `[listen] backlog` is over the kernel's cap (a listeners audit:
    /// 65535 became 4096 without a word, as systemd and nginx also leave it).
    func sayBacklogCap() {
        guard !socketsFromUnit, let text = ProcFS.read("/proc/sys/net/core/somaxconn"),
            let cap = Int32(text.filter { !$0.isWhitespace }), config.listen.backlog > cap
        else { return }
        logger.info("[listen] backlog \(config.listen.backlog) is capped at \(cap) by the kernel (net.core.somaxconn)")
    }

    /// Under socket activation, a `[listen]` that names other sockets than the socket unit
    /// passed (nil when they agree, or `[listen]` names none): a systemd/CI audit added an
    /// address to `[listen]`, and baton went on listening on the unit's sockets alone without a
    /// word.
    static func listenMismatch(configured: [ListenAddress], passed: [String]) -> String? {
        let named = configured.map(\.description)
        guard !named.isEmpty, Set(named) != Set(passed) else { return nil }
        return "[listen] addresses (\(named.joined(separator: ", "))) are not the sockets systemd passed (\(passed.joined(separator: ", "))): "
            + "under socket activation the socket unit's ListenStream= decides, and baton listens on what it received"
    }

    /// `error` from binding `address`, with the processes that hold its port when it is in use
    /// (the first 5, with their command names): what baton cannot take over and the operator
    /// must stop. A version audit: after `kill -9` of a baton that kept no record, `serve` said
    /// only `Address already in use` while its 3 orphaned workers served on.
    func namingHolders(_ error: any Error, of address: ListenAddress) -> any Error {
        guard let failure = error as? SystemError, failure.errno == EADDRINUSE, case .tcp(_, let port) = address, port != 0 else { return error }
        let table = host.processes
        let pids = Set(table.tcpListenerInodes(port: port).flatMap { table.socketHolders(inode: $0) }).sorted()
        guard !pids.isEmpty else { return error }
        let named = pids.prefix(5).map { pid in "\(pid)" + (table.commandName(of: pid).map { " (\(ControlProtocol.withControlsShown($0)))" } ?? "") }
        let more = pids.count > 5 ? " and \(pids.count - 5) more" : ""
        return DaemonError("\(error); held by pid \(named.joined(separator: ", "))\(more)")
    }
}
