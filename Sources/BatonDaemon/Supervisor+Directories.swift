import BatonCore
import BatonSystem
import Glibc

/// baton's own directories: it creates them with its modes, uses existing ones as
/// they are (never chmod, chown or removal of what it did not create), and
/// records the release folders it deployed, the only ones retention may remove.
extension Supervisor {
    /// Creates (or checks) the runtime directory and its notify subdirectory;
    /// `createdNotifyDirectory` says whether baton made the latter.
    func prepareRuntimeDirectory() throws(DirectoryError) {
        do throws(DirectoryError) {
            // Room for the longest notify socket path (a `$RUNTIME_DIRECTORY` check-config never saw).
            guard runtimeDirectory.utf8.count <= WorkerContract.maxRuntimeDirectoryLength else {
                throw DirectoryError(
                    path: runtimeDirectory,
                    reason: .system(
                        SystemError(
                            "longer than \(WorkerContract.maxRuntimeDirectoryLength) bytes, no room for the notify sockets in", errno: ENAMETOOLONG,
                            subject: runtimeDirectory)))
            }
            try Filesystem.makeDirectory(runtimeDirectory, mode: 0o755, refuseWritableByOthers: true)
            // 0711: any worker user may reach its own socket, which is 0600 and its user's
            // (`bindNotifySocket`), and none may list the others. Chowned to `[app] user` as it
            // was, a reload to another user failed every new worker's READY=1 (EACCES).
            createdNotifyDirectory = !(try Filesystem.makeDirectory(notifyDirectory, mode: 0o711, refuseWritableByOthers: true)).isEmpty
        } catch {
            var error = error
            error.key = Self.directoryKey(config.app.runtimeDirectory, environment: "RUNTIME_DIRECTORY", what: "runtime directory")
            throw error
        }
    }

    /// Takes the runtime directory's lock (`.lock`, ``LockFile``), held while baton runs: two
    /// batons given one runtime directory and started at once both passed the record's check
    /// (neither had written one yet), then shared `instance.json`, and a crash of one left its
    /// workers serving with no record to take them over by (a multi-app audit, 3 of 9 starts and
    /// under systemd at the first try). Looked at with the runtime files every 5 s: taken again
    /// when its file was removed or replaced; one another baton took meanwhile is an ERROR and a
    /// status problem (a re-audit: after `rm -rf` of the directory a second baton started and
    /// locked it, unsaid, and the first's record then named the second's workers).
    /// `refuse`: a lock another baton holds, or a `.lock` that cannot be opened (a symbolic link
    /// there), fails the start; else it is said (the new image of `baton upgrade`, which finds
    /// its predecessor's released at the execve; a baton running).
    func lockRuntimeDirectory(refuse: Bool) throws(DirectoryError) {
        if let held = takeOver.runtimeLock, held.isStillAtItsPath { return }
        let lost = takeOver.runtimeLock != nil
        do {
            takeOver.runtimeLock = try LockFile.take(runtimeDirectory + "/.lock")
            takeOver.runtimeLockTrouble = nil
            if lost {
                logger.warning("\(runtimeDirectory)/.lock was removed or replaced while baton ran: locked again")
                // Its record too: another baton that held the lock meanwhile wrote its own and
                // removed it at its stop (a re-audit 2: no record until a worker exited, and a
                // crash meanwhile left the workers to no one).
                recordInstance()
            }
        } catch {
            var problem: DirectoryError
            switch error {
            case .held(let pid): problem = DirectoryError(path: runtimeDirectory, reason: .runtimeInUse(pid: pid))
            case .system(let error): problem = DirectoryError(path: runtimeDirectory, reason: .system(error))
            }
            problem.key = Self.directoryKey(config.app.runtimeDirectory, environment: "RUNTIME_DIRECTORY", what: "runtime directory")
            if refuse {
                // What this start made there may be the other baton's by now (a re-audit: a
                // refused start removed the `notify` folder the winner went on with).
                createdNotifyDirectory = false
                throw problem
            }
            let text = lost ? "the runtime directory's lock was lost while baton ran and cannot be taken again: \(problem)" : "\(problem)"
            if text != takeOver.runtimeLockTrouble { logger.error("\(text)") }
            takeOver.runtimeLockTrouble = text
        }
    }

    /// A start that failed before any worker ran (its port in use, a control socket it could
    /// not bind): what it made under the runtime directory goes, as at a stop. An audit found
    /// an empty `notify` folder left by a `serve` that exited 1 on `Address already in use`.
    func removeRuntimeFilesIfNothingRuns() {
        guard nothingRuns else { return }
        control?.close()
        removeOwnListeningFiles()
        releaseRuntimeLock()
    }

    /// Removes the runtime directory's lock file, still this baton's, and closes it: at a stop,
    /// as nothing else it made stays there.
    func releaseRuntimeLock() {
        if let held = takeOver.runtimeLock, held.isStillAtItsPath { unlink(held.path) }
        takeOver.runtimeLock = nil
    }

    /// No worker, orphan of a dead baton, or mold runs.
    var nothingRuns: Bool { slots.allSatisfy({ $0.workers.isEmpty }) && takeOver.orphans.isEmpty && moldBook.molds.isEmpty }

    /// Closes the listening sockets (the supervisor owns them) and removes what baton made for
    /// itself: the unix sockets it bound and kept (a socket unit's path, or one in systemd's FD
    /// store, must outlive this process) and the notify folder, if baton made it (every notify
    /// socket went with its worker).
    func removeOwnListeningFiles() {
        listeners.removeAll()
        // Only the file baton bound: another process's socket bound at the path since stays.
        for path in ownedUnixPaths where isOwnUnixListenerFile(path) { unlink(path) }
        if createdNotifyDirectory { rmdir(notifyDirectory) }
    }

    /// `app.X_directory` when set, else `$VARIABLE` when systemd set it, else `what`:
    /// which setting a directory error is about.
    /// The default named as such, with the key that sets it (a pid-1 audit: a user not root
    /// got `runtime directory: mkdir /run/baton: Permission denied`, no key named).
    static func directoryKey(_ configured: String?, environment: String, what: String) -> String {
        let name = what.replacing(" ", with: "_")
        if configured != nil { return "app." + name }
        return getenv(environment) != nil ? "$" + environment : "\(what) (the default; [app] \(name) sets it)"
    }

    /// baton's state and runtime directories and the config file's folder: never
    /// pruned, nor any folder holding one.
    var batonDirectories: [String] {
        var directories = [Self.stateDirectory(for: config), runtimeDirectory]
        if let path = options.configPath, !path.isEmpty, let folder = DirectoryRules.folder(ofFile: path) { directories.append(folder) }
        return directories
    }
}
