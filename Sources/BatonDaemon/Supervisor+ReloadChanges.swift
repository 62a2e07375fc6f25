import BatonCore
import BatonSystem
import Glibc

/// What a reload cannot change in place: the sockets, the control socket, the metrics
/// endpoint and the state and runtime directories are opened once, at start.
extension Supervisor {
    func restartOnlyChanges(_ newConfig: BatonConfig) -> [String] {
        var changes: [String] = []
        if newConfig.listen != config.listen { changes.append("[listen]") }
        if newConfig.control != config.control { changes.append("[control]") }
        // Opened once at start: the metrics endpoint and the state and runtime directories.
        if newConfig.metrics != config.metrics { changes.append("[metrics]") }
        if newConfig.app.stateDirectory != config.app.stateDirectory { changes.append("[app] state_directory") }
        if newConfig.app.runtimeDirectory != config.app.runtimeDirectory { changes.append("[app] runtime_directory") }
        return changes
    }

    static func applying(_ newConfig: BatonConfig, keepingRestartOnlyFrom old: BatonConfig) -> BatonConfig {
        var merged = newConfig
        merged.listen = old.listen
        merged.control = old.control
        merged.metrics = old.metrics
        merged.app.stateDirectory = old.app.stateDirectory
        merged.app.runtimeDirectory = old.app.runtimeDirectory
        return merged
    }

    /// A reload that failed changed nothing: its config, and what status says of it, go back
    /// (a reload audit: a rolled-back reload left `restart needed: [metrics]` in status).
    func restorePreviousConfig(_ op: Operation) {
        if let previous = op.previousConfig { config = previous }
        if let (needed, listen) = op.previousRestartOnly { (restartNeeded, reloadedListen) = (needed, listen) }
    }

    /// Logs and reports each restart-only change of a reload, with what does apply it.
    func reportRestartOnlyChanges(_ newConfig: BatonConfig, _ op: Operation) {
        // Also in `baton status` until baton restarts (a reload audit: only the reload's reply
        // and the log said so). Each reload's config replaces the last one's list.
        let changes = restartOnlyChanges(newConfig)
        restartNeeded = changes.filter { !($0 == "[listen]" && socketsFromUnit) }
        reloadedListen = newConfig.listen.addresses
        for change in changes {
            if change == "[listen]" && socketsFromUnit {
                // A restart of baton gets the same sockets from the unit again.
                logger.warning(
                    "[listen] changed: not used under socket activation; change the socket unit's ListenStream= (systemctl daemon-reload, then a restart of the socket unit, which closes the port meanwhile)"
                )
                op.report("[listen] changed: not used under socket activation (the socket unit's ListenStream= is)")
                continue
            }
            logger.warning("\(change) changed: takes effect only after a restart of baton (systemctl restart)")
            op.report("\(change) changed: needs a restart of baton, not a reload")
            if change == "[app] state_directory", let line = movedStateDirectoryWarning(newConfig) {
                logger.warning("\(line)")
                op.report(line)
            }
            // As check-config notes it (a reload audit: a file cut off before [listen] passed
            // with only "[listen] changed").
            if change == "[listen]", newConfig.listen.addresses.isEmpty {
                let line = "[listen] has no addresses: baton not socket-activated, as now, would exit 2 at its next start"
                logger.warning("\(line)")
                op.report(line)
            }
        }
        // Not a restart-only setting, and no release of its own either: the workers run the
        // current release whatever it says (an operator audit: the reload said nothing).
        if newConfig.app.directory != config.app.directory, newConfig.app.directory != releaseState.current.directory {
            let line =
                "[app] directory changed: the workers stay on the current release \(releaseState.current.directory); it is the release baton starts on when none is persisted (baton deploy --release \(newConfig.app.directory) runs it now)"
            logger.warning("\(line)")
            op.report(line)
        }
    }

    /// What a restart onto `newConfig`'s state directory would lose, when it holds no release
    /// state (a day-2 audit: moving `state_directory` rolled the app back to `[app] directory`
    /// at the restart, with an empty history, and no line said why).
    func movedStateDirectoryWarning(_ newConfig: BatonConfig) -> String? {
        let new = Self.stateDirectory(for: newConfig)
        if let other = StateStore.recordedApp(in: new), other != newConfig.app.name {
            // (A re-audit: only "needs a restart" was said; the restart then exited 2.)
            return "the new state directory \(new) holds app \"\(other)\"'s release state: a restart would exit 2 (give this app a state_directory of its own)"
        }
        guard access(new + "/release.json", F_OK) != 0 else { return nil }
        // What the old directory holds that a restart on the new one would lose, by what baton
        // knows (a re-audit: after a deploy, a line leaving release.json out of the files to
        // copy lost the previous release when followed).
        let kept =
            (releases.persisted ? ["release.json"] : [])
            + (releases.history.isEmpty ? [] : ["history.jsonl"]) + (releases.deployed.isEmpty ? [] : ["deployed.json"])
        guard !kept.isEmpty else { return nil }
        var lost: [String] = []
        if newConfig.app.directory != releaseState.current.directory {
            lost.append("start on [app] directory \(newConfig.app.directory), not on the current release \(releaseState.current.directory)")
        } else if let previous = releaseState.previous {
            lost.append("start without the previous release \(previous.directory) (nothing to roll back to)")
        } else {
            lost.append("start on the same release")
        }
        if !releases.history.isEmpty { lost.append("with no history") }
        // (A re-audit: a `cp` as told into a folder not made yet failed.)
        let make = access(new, F_OK) != 0 ? "make it and " : ""
        return
            "the new state directory \(new) holds no release state: a restart would \(lost.joined(separator: ", ")); \(make)copy \(kept.joined(separator: ", ")) from \(releases.directory) into it first"
    }

    /// Why a reload cannot rename the app; with its own state directory, whose release.json
    /// names the old app, that a baton of the new name refuses (a re-audit: the restart this
    /// advised exited 2).
    func renameProblem(_ newConfig: BatonConfig) -> String {
        let kept = newConfig.app.stateDirectory.map { access($0 + "/release.json", F_OK) == 0 } ?? false
        return "app.name changed: restart baton to rename the app"
            + (kept ? " (its state_directory's release.json names \"\(config.app.name)\": move it away first, or the restart exits 2)" : "")
    }
}
