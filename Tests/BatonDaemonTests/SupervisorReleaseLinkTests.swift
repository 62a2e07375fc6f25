import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// Release folders deployed through symbolic links (Capistrano's `current`) and spelled in
/// more than one way, found by a layout audit. Fake host and clock, real folders and links.
@Suite struct SupervisorReleaseLinkTests {
    /// Retention on, keeping 1 release besides the current and previous ones.
    func harness() throws -> DaemonHarness {
        let h = try DaemonHarness(workers: 1) {
            $0.deploy.keepReleases = 1
            $0.deploy.stabilityWindow = .zero
        }
        mkdir(h.root + "/releases", 0o755)
        h.supervisor.config.deploy.releasesDirectory = h.root + "/releases"
        try h.start()
        return h
    }

    func deploy(_ h: DaemonHarness, _ path: String) {
        let deploy = h.deploy(path)
        h.finishOperations()
        h.awaitReads()
        #expect(deploy.reply?.ok == true, "\(path): \(String(describing: deploy.reply))")
    }

    func flip(_ link: String, to target: String) {
        unlink(link)
        #expect(symlink(target, link) == 0)
    }

    /// The audit (2 of 2): a release deployed through a link was recorded as the link; once the
    /// link was flipped to a fresh upload, retention took that upload for a deployed release
    /// and removed it.
    @Test func aFolderALinkNamesLaterIsNotDeployedThroughIt() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["r10", "r11", "r13"] { mkdir(releases + "/" + name, 0o755) }
        let link = h.root + "/cur2"
        flip(link, to: releases + "/r10")
        deploy(h, link)
        deploy(h, releases + "/r11")
        mkdir(releases + "/r12", 0o755)  // a fresh upload, never deployed
        flip(link, to: releases + "/r12")
        deploy(h, releases + "/r13")
        #expect(access(releases + "/r12", F_OK) == 0, "the upload is not baton's to remove")
        #expect(access(releases + "/r10", F_OK) != 0, "the folder deployed through the link is, once old")
    }

    /// The audit (1 of 1): after `ln -sfn` of the link the workers were deployed through,
    /// `baton releases --prune` removed the folder all of them ran in.
    @Test func theFolderWorkersRunInIsKeptAfterTheirLinkFlips() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["r10", "r11", "r12"] { mkdir(releases + "/" + name, 0o755) }
        deploy(h, releases + "/r10")
        deploy(h, releases + "/r11")
        let link = h.root + "/cur"
        flip(link, to: releases + "/r10")
        deploy(h, link)
        flip(link, to: releases + "/r12")
        let report = try h.supervisor.releasesReport()
        // The workers' folder is the current release; the upload the link names now is in use
        // (a respawn would start there), not current (a releases audit: shown `current`, and the
        // workers' folder `in-use`).
        #expect(report.releases.first { $0.name == "r10" }?.mark == .current, "\(report.releases.map { ($0.name, $0.mark) })")
        #expect(report.releases.first { $0.name == "r12" }?.mark == .inUse, "\(report.releases.map { ($0.name, $0.mark) })")
        h.supervisor.pruneReleases()
        h.awaitReads()
        h.settle()
        #expect(access(releases + "/r10", F_OK) == 0)
        // And across `baton upgrade`: the next image is handed each worker's folder.
        let state = h.supervisor.upgradeState(controlFD: -1, clientFD: nil)
        #expect(state.slots.map(\.worker.folder) == [Supervisor.resolved(releases + "/r10")])
    }

    /// The audit (3 of 3): deploy A, deploy B, deploy B again as `B/` (tab completion), `./B`
    /// or a link to B: rollback went to B, A was lost.
    @Test func aRedeployOfTheCurrentFolderSpelledOtherwiseKeepsThePrevious() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["A", "B"] { mkdir(releases + "/" + name, 0o755) }
        #expect(symlink(releases + "/B", h.root + "/Blink") == 0)
        deploy(h, releases + "/A")
        deploy(h, releases + "/B")
        for spelling in [releases + "/B/", releases + "/./B", h.root + "/Blink"] {
            deploy(h, spelling)
            #expect(h.supervisor.releaseState.previous?.directory == releases + "/A", "\(spelling)")
        }
    }

    /// The folders the serving workers started in.
    func servingFolders(_ h: DaemonHarness) -> [String?] { h.supervisor.slots.map { $0.current?.folder } }

    /// An operator-release audit: deploy r3, flip the link to r5 and deploy it, flip it back
    /// to r3 and deploy r3. The deploy was taken for a redeploy of the current folder (the link
    /// named r3 by then): release.json had r3 as current and previous, r5 was lost, and
    /// `baton rollback` replaced every worker onto r3 again, exit 0.
    @Test func aLinkFlippedSinceItsDeployIsRecordedAsTheFolderThatRan() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["r3", "r5"] { mkdir(releases + "/" + name, 0o755) }
        let link = h.root + "/current"
        deploy(h, releases + "/r3")
        flip(link, to: releases + "/r5")
        deploy(h, link)
        flip(link, to: releases + "/r3")
        deploy(h, releases + "/r3")
        #expect(h.supervisor.releaseState.current.directory == releases + "/r3")
        #expect(h.supervisor.releaseState.previous?.directory == Supervisor.resolved(releases + "/r5"))
        let rollback = h.rollback()
        h.finishOperations()
        #expect(rollback.reply?.ok == true, "\(String(describing: rollback.reply))")
        #expect(servingFolders(h) == [Supervisor.resolved(releases + "/r5")])
    }

    /// A re-audit: deploy through the link (on 5), then deploy 4 directly: the previous release
    /// was recorded as the link; once it was flipped to a fresh upload (7), `baton rollback`
    /// went to 7, a release that never ran.
    @Test func aPreviousReleaseDeployedThroughALinkIsRecordedAsItsFolder() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["4", "5", "7"] { mkdir(releases + "/" + name, 0o755) }
        let link = h.root + "/current"
        flip(link, to: releases + "/5")
        deploy(h, link)
        deploy(h, releases + "/4")
        #expect(h.supervisor.releaseState.previous?.directory == Supervisor.resolved(releases + "/5"))
        flip(link, to: releases + "/7")
        let rollback = h.rollback()
        h.finishOperations()
        #expect(rollback.reply?.ok == true, "\(String(describing: rollback.reply))")
        #expect(servingFolders(h) == [Supervisor.resolved(releases + "/5")])
    }

    /// The same audit: with every deploy made through the link (`ln -sfn` to the new upload,
    /// then `deploy --release current`), the previous release never changed: each deploy was
    /// a "redeploy" of the link, and rollback went to whatever came before the first.
    @Test func deploysThroughOneFlippedLinkRollBackToTheFolderBefore() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["C", "D", "E"] { mkdir(releases + "/" + name, 0o755) }
        let link = h.root + "/current"
        deploy(h, releases + "/C")
        for name in ["D", "E"] {
            flip(link, to: releases + "/" + name)
            deploy(h, link)
        }
        #expect(h.supervisor.releaseState.current.directory == link)
        #expect(h.supervisor.releaseState.previous?.directory == Supervisor.resolved(releases + "/D"))
        let rollback = h.rollback()
        h.finishOperations()
        #expect(rollback.reply?.ok == true, "\(String(describing: rollback.reply))")
        #expect(servingFolders(h) == [Supervisor.resolved(releases + "/D")])
    }

    /// The same cause: a deploy through a link flipped to a release that fails rolled the
    /// slots it had replaced back onto the link, which names the failing release now.
    @Test func aFailedDeployThroughAFlippedLinkRollsBackToTheFolderThatRan() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.stabilityWindow = .zero }
        try h.start()
        let good = h.makeRelease("good")
        let bad = h.makeRelease("bad")
        let link = h.root + "/current"
        flip(link, to: good)
        deploy(h, link)
        flip(link, to: bad)
        // The canary (slot 0) becomes ready; slot 1's new worker on the bad release never does.
        h.autoReady = { child in
            !(child.request.environment.contains("BATON_SLOT=1") && Supervisor.resolved(child.request.directory ?? "") == Supervisor.resolved(bad))
        }
        let failed = h.deploy(link)
        h.finishOperations()
        #expect(failed.reply?.ok == false, "\(String(describing: failed.reply))")
        #expect(servingFolders(h) == [Supervisor.resolved(good), Supervisor.resolved(good)])
    }

    /// The releases audit: with `keep_releases = 3`, deploy 1, deploy 2 through a link, deploy 3
    /// and 4: retention pruned 2, the newest old release, and kept 1. Its history line named the
    /// link, so it had no rank among the folders deployed.
    @Test func aFolderDeployedThroughALinkKeepsItsPlaceInRetention() throws {
        let h = try harness()
        h.supervisor.config.deploy.keepReleases = 3
        let releases = h.root + "/releases"
        for name in ["1", "2", "3", "4"] { mkdir(releases + "/" + name, 0o755) }
        let link = h.root + "/current"
        deploy(h, releases + "/1")
        flip(link, to: releases + "/2")
        deploy(h, link)
        #expect(h.supervisor.history.last?.folder == Supervisor.resolved(releases + "/2"))
        deploy(h, releases + "/3")
        deploy(h, releases + "/4")
        h.awaitReads()
        h.settle()
        #expect(access(releases + "/2", F_OK) == 0, "the newest old release is kept")
        #expect(access(releases + "/1", F_OK) != 0, "the oldest goes")
    }

    /// A releases re-audit: deploy H, K, then `H/../J`: retention removed H, which the current
    /// release's path goes through, and its next worker failed on chdir; and a link flipped to
    /// a fresh upload, in use as a respawn's folder, took the place of a release that ran.
    @Test func aFolderACurrentPathGoesThroughIsKeptAndAnUploadALinkNamesTakesNoPlace() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["H", "J", "K"] { mkdir(releases + "/" + name, 0o755) }
        deploy(h, releases + "/H")
        deploy(h, releases + "/K")
        deploy(h, releases + "/H/../J")
        #expect(access(releases + "/H", F_OK) == 0, "the current release's path goes through H")
        // A re-audit 2: the `..` in a link's target (`cur3` → `releases/M/../N`).
        for name in ["M", "N", "P"] { mkdir(releases + "/" + name, 0o755) }
        deploy(h, releases + "/M")
        deploy(h, releases + "/P")
        #expect(symlink("releases/M/../N", h.root + "/cur3") == 0)
        deploy(h, h.root + "/cur3")
        #expect(access(releases + "/M", F_OK) == 0, "the current release's link goes through M")
        let g = try DaemonHarness(workers: 1) {
            $0.deploy.keepReleases = 3
            $0.deploy.stabilityWindow = .zero
        }
        let more = g.root + "/releases"
        mkdir(more, 0o755)
        g.supervisor.config.deploy.releasesDirectory = more
        try g.start()
        for name in ["3", "4", "5", "6"] { mkdir(more + "/" + name, 0o755) }
        let link = g.root + "/current"
        deploy(g, more + "/3")
        deploy(g, more + "/4")
        flip(link, to: more + "/5")
        deploy(g, link)
        flip(link, to: more + "/6")
        let marks = Dictionary(uniqueKeysWithValues: try g.supervisor.releasesReport().releases.map { ($0.name, $0.mark) })
        #expect(marks["5"] == .current && marks["4"] == .previous && marks["6"] == .inUse, "\(marks)")
        #expect(marks["3"] == .kept, "keep 3: the current and previous releases, and 3; the upload takes no place: \(marks)")
    }

    /// The releases audit: the link flipped from D to E while a deploy through it ran one slot
    /// at a time; it finished, exit 0, with 3 workers on D and 1 on E, and nothing said so.
    @Test func aDeployWhoseLinkFlipsWhileItRunsSaysItsWorkersRunTwoFolders() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.stabilityWindow = .zero }
        try h.start()
        let d = h.makeRelease("D")
        let e = h.makeRelease("E")
        let link = h.root + "/current"
        flip(link, to: d)
        h.autoReady = { _ in false }
        let client = RecordingWaiter()
        h.supervisor.requestDeploy(kind: .deploy, options: DeployOptions(release: link, maxSurge: 1), waiter: client, uid: 0)
        h.awaitReads()
        h.advance(by: .milliseconds(100))
        flip(link, to: e)
        h.autoReady = { _ in true }
        h.finishOperations()
        let message = client.reply?.message ?? ""
        #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
        #expect(
            message.contains(
                "its workers run 2 folders (\(Supervisor.resolved(d)): slot 0; \(Supervisor.resolved(e)): slot 1): a link in its path was flipped while it ran"),
            "\(message)")
        // Both folders are deployed: retention may remove each once old (a re-audit 3: the one
        // the link no longer named was `not-deployed` for ever).
        let deployedFolders = Set(h.supervisor.releases.deployed.map { PathKey($0) })
        #expect(deployedFolders.isSuperset(of: [PathKey(Supervisor.resolved(d)), PathKey(Supervisor.resolved(e))]), "\(deployedFolders)")
        // The next deploy's previous release is a folder that ran, slot 0's on a tie (a re-audit
        // 2: the link itself, and a rollback after it was flipped again went to a fresh upload).
        deploy(h, h.makeRelease("F"))
        #expect(h.supervisor.releaseState.previous?.directory == Supervisor.resolved(d))
    }

    /// The audit: a release named with a newline split every line naming it (status, history,
    /// the refusal itself); an escape sequence coloured the operator's terminal.
    @Test func aReleasePathWithAControlCharacterIsRefused() throws {
        let h = try harness()
        let odd = h.makeRelease("new\nline")
        let deploy = h.deploy(odd)
        h.finishOperations()
        let message = deploy.reply?.error ?? ""
        #expect(message.contains("has a control character in its path") && !message.contains("\n"), "\(message)")
        #expect(h.supervisor.releaseState.current.directory == h.initialRelease)
    }

    /// A layout audit: a rollback to a previous release whose folder was removed or renamed
    /// started a canary that failed on chdir (exit 1), where a deploy to a missing folder is
    /// refused up front (exit 2).
    @Test func aRollbackToAFolderThatIsGoneIsRefusedUpFront() throws {
        let h = try harness()
        let releases = h.root + "/releases"
        for name in ["r1", "r2"] { mkdir(releases + "/" + name, 0o755) }
        deploy(h, releases + "/r1")
        deploy(h, releases + "/r2")
        let before = h.servingPIDs
        #expect(rename(releases + "/r1", releases + "/r1-old") == 0)
        let rollback = h.rollback()
        h.finishOperations()
        #expect(rollback.reply?.code == 2, "\(String(describing: rollback.reply))")
        #expect(rollback.reply?.error == "the previous release \(releases)/r1 is not a directory (removed or renamed?): nothing to roll back to")
        #expect(h.servingPIDs == before)
        // In history, as a refusal for another operation is (a releases audit: the log only).
        let line = try #require(h.supervisor.history.last)
        #expect(line.kind == .rollback && line.outcome == .refused && line.release == releases + "/r1", "\(line)")
        #expect(line.detail?.contains("nothing to roll back to") == true)
        let missing = h.deploy(releases + "/nope")
        h.finishOperations()
        #expect(missing.reply?.code == 2)
        let refusedDeploy = try #require(h.supervisor.history.last)
        #expect(refusedDeploy.kind == .deploy && refusedDeploy.outcome == .refused && refusedDeploy.release == releases + "/nope", "\(refusedDeploy)")
    }

    /// A chaos audit (1 of 3 runs): a queued deploy's folder counted towards `keep_releases`,
    /// and R3, deployed 4.3 s before, was pruned in its place. A folder an operation waits to
    /// run is kept, but keep counts releases that ran.
    @Test func aQueuedDeploysFolderIsKeptWithoutTakingAReleasesPlace() throws {
        let h = try harness()
        h.supervisor.config.deploy.keepReleases = 4
        let releases = h.root + "/releases"
        for name in ["r1", "r2", "r3", "r4", "r5"] { mkdir(releases + "/" + name, 0o755) }
        for name in ["r2", "r3", "r4"] { deploy(h, releases + "/" + name) }
        h.autoReady = { _ in false }
        let running = h.deploy(releases + "/r5")
        let queued = h.deploy(releases + "/r1", wait: true)
        h.advance(by: .milliseconds(100))
        let marks = Dictionary(uniqueKeysWithValues: try h.supervisor.releasesReport().releases.map { ($0.name, $0.mark) })
        #expect(marks["r1"] == .inUse, "the queued deploy's folder is kept: \(marks)")
        #expect(marks["r2"] == .kept, "r4, r3, r5 (its new worker) and r2 are the 4 kept: \(marks)")
        h.autoReady = { _ in true }
        h.finishOperations()
        #expect(running.reply?.ok == true && queued.reply?.ok == true)
    }

    /// A names audit: a deploy of `cafe\u{301}` (NFD) after `café` (NFC), two folders, was taken
    /// for a redeploy of the current one: release.json kept the release before as previous,
    /// and `baton rollback` skipped café.
    @Test func aFolderNamedAsTheCurrentOneInAnotherNormalizationIsAnotherRelease() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let (nfc, nfd) = h.deployNormalizationTwins()
        #expect(Array(h.supervisor.releaseState.current.directory.utf8) == Array(nfd.utf8))
        #expect(h.supervisor.releaseState.previous.map { Array($0.directory.utf8) } == Array(nfc.utf8))
    }

    /// Stop 46's names audit, left then: the release's environment was compared as Strings, so
    /// `--env GREETING=café` in NFC and then in NFD (two byte strings a worker tells apart) was
    /// taken for a redeploy of the same release, and the previous release was lost.
    @Test func anEnvironmentValueInAnotherNormalizationIsAnotherRelease() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let folder = h.makeRelease("r2")
        for value in ["caf\u{E9}", "cafe\u{301}"] {
            let client = RecordingWaiter()
            let options = DeployOptions(release: folder, environment: [EnvVar(name: "GREETING", value: value)])
            h.supervisor.requestDeploy(kind: .deploy, options: options, waiter: client, uid: 0)
            h.awaitReads()
            h.finishOperations()
            #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
        }
        #expect(h.supervisor.releaseState.current.environment.map { Array($0.value.utf8) } == [Array("cafe\u{301}".utf8)])
        #expect(h.supervisor.releaseState.previous?.environment.map { Array($0.value.utf8) } == [Array("caf\u{E9}".utf8)])
        #expect(EnvVar(name: "A", value: "caf\u{E9}") != EnvVar(name: "A", value: "cafe\u{301}"))
    }

    /// A names audit: `deploy --dry-run --command /x $'a\e[31m' "b c" "" $'n\nl'` printed
    /// `command: /x a^[[31m b c  n` and a line `l`: a newline faked a plan line, an ESC reached
    /// the terminal, and where one argument ended could not be told.
    @Test func aDryRunShowsEachArgumentOfTheCommandAsOne() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let client = RecordingWaiter()
        let options = DeployOptions(release: h.makeRelease("r2"), command: ["/x", "a\u{1B}[31m", "b c", "", "n\nl", "it's"], dryRun: true)
        h.supervisor.requestDeploy(kind: .deploy, options: options, waiter: client, uid: 0)
        h.awaitReads()
        let lines = (client.reply?.details ?? []) + [client.reply?.message ?? ""] + client.progress
        #expect(lines.contains { $0 == #"command: /x $'a\x1b[31m' 'b c' '' $'n\nl' 'it'\''s'"# }, "\(lines)")
        #expect(Supervisor.shellWord("/srv/app-1.2/bin/puma") == "/srv/app-1.2/bin/puma")
        #expect(Supervisor.shellWord("caf\u{E9} \u{202E}x") == "$'caf\u{E9} \\u202ex'")
        // A backslash and an n, and a newline, read apart (a re-audit: both were 'a\nb').
        #expect(Supervisor.shellWord(#"a\nb"#) == #"'a\nb'"#)
        #expect(Supervisor.shellWord("a\nb") == #"$'a\nb'"#)
        #expect(Supervisor.shellWord("it's\n") == #"$'it\'s\n'"#)
        // A C1 control as \u: bash's \x85 is a byte, not U+0085 (a re-audit).
        #expect(Supervisor.shellWord("a\u{85}") == #"$'a\u0085'"#)
    }
}
