import BatonCore
import BatonSystem
import Glibc

/// What baton keeps under its runtime directory while it runs (the directory and its `notify`
/// folder, each worker's and mold's notify socket, the control socket), made again when it is
/// removed from under baton: `rm -rf` of the runtime directory or of `notify`, a tmpfiles
/// clean-up. A disk audit removed `notify/`: every start failed from then on
/// (`bind …/notify/w1-3-….sock: No such file or directory`, a crash loop, a deploy refused),
/// and with a watchdog the running workers, whose sockets were gone, were replaced by workers
/// that could not start: `0/3 workers ready` until the folder was made again by hand.
extension Supervisor {
    /// How often the files are looked at (a start looks at the folder first too).
    static let runtimeCheckInterval: Duration = .seconds(5)

    func scheduleRuntimeCheck() {
        loop.schedule(after: Self.runtimeCheckInterval) { [unowned self] in
            guard self.phase != .stopping else { return }
            self.checkRuntimeFiles()
            self.scheduleRuntimeCheck()
        }
    }

    /// Makes the folders again, then binds again the sockets whose files are gone.
    func checkRuntimeFiles() {
        guard restoreNotifyDirectory() else { return }
        control?.checkPath()
        for worker in slots.flatMap(\.workers) {
            rebindNotifyIfRemoved(worker, credentials: worker.spec.credentials) { $0.readNotify($1) }
        }
        for mold in moldBook.molds {
            rebindNotifyIfRemoved(mold, credentials: mold.spec.credentials) { $0.readNotify($1) }
        }
    }

    /// Whether the notify folder is there, made again (with the runtime directory) when it
    /// was removed; a failure is logged once until it changes.
    @discardableResult
    func restoreNotifyDirectory() -> Bool {
        var info = stat()
        guard stat(notifyDirectory, &info) != 0 else { return true }
        do {
            try prepareRuntimeDirectory()
            runtimeTrouble = nil
            logger.warning("\(notifyDirectory) was removed while baton ran: made it again")
            // The record a baton started after a crash of this one finds its workers by.
            recordInstance()
            return true
        } catch {
            let text = "\(notifyDirectory) was removed and cannot be made again: \(error)"
            if text != runtimeTrouble { logger.error("\(text)") }
            runtimeTrouble = text
            return false
        }
    }

    /// A new notify socket at the path of `child`'s, whose file is gone, in place of the old
    /// one: the child's next message (sd_notify sends to the path each time) reaches baton.
    private func rebindNotifyIfRemoved<Child: ChildChannels>(
        _ child: Child, credentials: Credentials?, notified: @escaping (Supervisor, Child) -> Void
    ) {
        guard child.notifyFD >= 0, let path = child.notifyPath, access(path, F_OK) != 0 else { return }
        do {
            let socket = try bindNotifySocket(at: path, credentials: credentials)
            loop.unregister(fd: child.notifyFD)
            child.ownedNotify = consume socket  // closes the old one
            try loop.register(fd: child.notifyFD, events: .readable) { [unowned self, unowned child] _ in notified(self, child) }
            logger.warning("notify socket \(path) was removed: bound it again", metadata: ["pid": .stringConvertible(child.pid)])
        } catch {
            logger.error("notify socket \(path) was removed and cannot be bound again: \(error)", metadata: ["pid": .stringConvertible(child.pid)])
        }
    }
}
