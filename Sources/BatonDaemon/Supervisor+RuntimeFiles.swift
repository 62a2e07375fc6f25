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
        repeatUntilStopping(every: Self.runtimeCheckInterval) { [unowned self] in self.checkRuntimeFiles() }
    }

    /// Makes the folders again, then binds again the sockets whose files are gone; a removed
    /// state directory is made again with what baton knows (``ReleaseBook/restoreIfGone``).
    func checkRuntimeFiles() {
        // A process handed to baton while every worker lives raises no event: said here (a
        // re-audit: a `setsid` grandchild listed in status was logged only when some worker
        // exited, never if none did).
        reportEscapedChildren()
        checkUnixListenerFiles()
        releases.restoreIfGone(reopen: { [host, directory = releases.directory] () throws(DirectoryError) in try host.openStateStore(directory) }, on: loop)
        guard restoreNotifyDirectory() else { return }
        try? lockRuntimeDirectory(refuse: false)
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
        if stat(notifyDirectory, &info) == 0 {
            if info.st_mode & S_IFMT == S_IFDIR {
                runtimeTrouble = nil
                return true
            }
            // Not baton's to remove; said once, and every worker's watchdog waits for it.
            let text = "\(notifyDirectory) is not a folder (another file is there): workers cannot get a notify socket until it is removed"
            if text != runtimeTrouble { logger.error("\(text)") }
            runtimeTrouble = text
            return false
        }
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
            // Its pings while the file was gone were lost: its watchdog counts from now.
            if let worker = child as? Worker, worker.lastWatchdog != nil || worker.readyAt != nil { worker.lastWatchdog = loop.now() }
        } catch {
            logger.error("notify socket \(path) was removed and cannot be bound again: \(error)", metadata: ["pid": .stringConvertible(child.pid)])
        }
    }

    /// Before the watchdog judges workers: sockets whose files are gone are bound again now
    /// (their pings could not arrive), and a worker whose socket still has no file (the folder
    /// cannot be made) is not judged by its watchdog: baton's fault, not the worker's. A
    /// re-audit of `rm -rf RUNTIME/notify` with a 2 s watchdog saw healthy workers replaced in
    /// 10 of 17 runs between the removal and the next check, and with `notify` made a file
    /// every worker replaced by starts that could not bind (`0/2 workers ready`).
    func repairNotifySocketsBeforeTheWatchdog(_ workers: [Worker]) {
        let missing = workers.filter { $0.watchdogInterval != nil && $0.notifyPath.map { access($0, F_OK) != 0 } == true }
        guard !missing.isEmpty else { return }
        checkRuntimeFiles()
        for worker in missing where worker.notifyPath.map({ access($0, F_OK) != 0 }) == true {
            worker.lastWatchdog = loop.now()
        }
    }
}
