import BatonCore
@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// The release book on its own, on the in-memory state directory: what it loads, what a commit
/// persists before it counts, history and its counters, and the folders retention may remove.
@Suite struct ReleaseBookTests {
    let store = MemoryStore()
    let fallback = Release(directory: "/srv/app/r0")
    let book = ReleaseBook(
        directory: "/var/lib/baton/app", fallback: Release(directory: "/srv/app/r0"),
        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))

    /// `book.commit(_:on:then:)` as the supervisor calls it (the write off the loop), waited
    /// for: throws what it reported.
    func commit(_ state: ReleaseState) throws {
        let loop = try EventLoop()
        var reported: (any Error)??
        book.commit(state, on: loop) { reported = .some($0) }
        for _ in 0..<1000 where reported == nil { _ = loop.pump(waitingUpTo: 10) }
        let outcome = try #require(reported, "the commit never answered")
        if let error = outcome { throw error }
    }

    func entry(_ kind: OperationKind, _ release: String, _ outcome: OperationOutcome) -> HistoryEntry {
        HistoryEntry(kind: kind, release: release, previousRelease: nil, outcome: outcome, detail: nil, startedAt: 100, duration: 1, uid: 0)
    }

    @Test func servesTheFallbackUntilLoadedAndCannotCommitWithoutAStore() {
        #expect(book.state.current == fallback && book.state.previous == nil)
        #expect(!book.isUsable)
        #expect(throws: DaemonError.self) { try commit(ReleaseState(current: Release(directory: "/srv/app/r1"), previous: nil)) }
        #expect(throws: DaemonError.self) { try book.beginOperation(entry(.deploy, "/srv/app/r1", .inProgress)) }
        // A reload commits nothing: it goes on without a store.
        #expect(throws: Never.self) { try book.beginOperation(entry(.reload, "/srv/app/r0", .inProgress)) }
        #expect(book.state.current == fallback)
    }

    @Test func thePersistedReleaseWinsWhenItsFolderExists() throws {
        let saved = ReleaseState(current: Release(directory: "/srv/app/r2"), previous: Release(directory: "/srv/app/r1"))
        try store.save(saved)
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        #expect(book.state == saved)
        #expect(book.problems.isEmpty && book.isUsable)
    }

    @Test func aMissingPersistedReleaseFallsBackLoudlyAndKeepsThePrevious() throws {
        try store.save(ReleaseState(current: Release(directory: "/srv/app/gone"), previous: Release(directory: "/srv/app/r1")))
        book.load(from: store, fallback: fallback, releaseExists: { _ in false }, now: 200)
        #expect(book.state.current == fallback && book.state.previous?.directory == "/srv/app/r1")
        #expect(book.problems.count == 1 && book.problems[0].contains("/srv/app/gone is missing"))
    }

    /// A state audit: with release.json removed, baton started on `[app] directory` without a
    /// word, while history named the release that had run there.
    @Test func aRemovedReleaseStateWithAHistoryIsSaid() throws {
        try store.append([entry(.deploy, "/srv/app/r7", .succeeded), entry(.reload, "/srv/app/r7", .failed)])
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        #expect(book.state.current == fallback)
        #expect(
            book.problems == [
                "release.json is missing from the state directory, but its history names releases that ran here (the last: /srv/app/r7): "
                    + "started on [app] directory /srv/app/r0; deploy that release again to run it"
            ])
        // A first start (no history) says nothing.
        let fresh = ReleaseBook(directory: "/x", fallback: fallback, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        fresh.load(from: MemoryStore(), fallback: fallback, releaseExists: { _ in true }, now: 200)
        #expect(fresh.problems.isEmpty)
    }

    @Test func aCommitIsPersistedBeforeItCountsAndClearsTheProblems() throws {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        book.recordProblem("state directory not writable")
        let next = ReleaseState(current: Release(directory: "/srv/app/r1"), previous: fallback)
        store.saveError = SystemError("rename", errno: ENOSPC)
        #expect(throws: SystemError.self) { try commit(next) }
        #expect(book.state.current == fallback, "a failed write changes nothing")
        #expect(book.problems.count == 2 && book.problems[1].contains("No space left on device"), "and is a problem of its own: \(book.problems)")
        store.saveError = nil
        try commit(next)
        #expect(book.state == next && store.releaseState == next)
        #expect(book.problems.isEmpty)
    }

    @Test func aDeployThePreviousBatonNeverFinishedIsRecordedAsInterrupted() throws {
        store.inProgress = entry(.deploy, "/srv/app/r9", .inProgress)
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        let last = try #require(book.history.last)
        #expect(last.release == "/srv/app/r9" && last.outcome == .interrupted && last.duration == 60)
        #expect(last.detail == "baton exited before it finished; restarted on /srv/app/r0")
        #expect(store.inProgress == nil && store.loadHistory().last == last)
        #expect(book.deploysByOutcome == [.interrupted: 1])
    }

    /// A crash audit: a deploy interrupted while the state directory was full. The restarted
    /// baton took deploy.json, could not write the history line, and was killed again: the deploy
    /// was in no history, and `baton status` showed no problem. The record now stays until its
    /// line is written, and a history that cannot be written is a problem of the directory.
    @Test func anInterruptedDeployAFullDiskCannotRecordStaysUntilItsLineIsWritten() throws {
        store.inProgress = entry(.deploy, "/srv/app/r9", .inProgress)
        store.appendError = SystemError("write", errno: ENOSPC)
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        #expect(book.history.last?.outcome == .interrupted)
        #expect(store.inProgress?.release == "/srv/app/r9", "the record must stay while its line is not written")
        #expect(book.problems.contains { $0.hasPrefix("cannot write history (1 line(s)") }, "\(book.problems)")
        // Killed again, still full: the next baton finds it again.
        let again = ReleaseBook(
            directory: "/var/lib/baton/app", fallback: fallback, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        again.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 170)
        #expect(store.inProgress?.release == "/srv/app/r9")
        // A deploy cannot take the record's place while its line cannot be written.
        #expect(throws: SystemError.self) { try again.beginOperation(entry(.deploy, "/srv/app/r10", .inProgress)) }
        #expect(store.inProgress?.release == "/srv/app/r9")
        // A re-audit: the refused deploy's end, or a reload that ran unrecorded, removed it.
        again.finishOperation()
        #expect(store.inProgress?.release == "/srv/app/r9", "a refused deploy's end must leave the record")
        #expect(throws: Never.self) { try again.beginOperation(entry(.reload, "/srv/app/r0", .inProgress)) }
        again.finishOperation()
        #expect(store.inProgress?.release == "/srv/app/r9", "a reload that ran unrecorded must leave the record")
        // Room again: the next line writes it, and the record goes.
        store.appendError = nil
        again.append(entry(.reload, "/srv/app/r0", .succeeded))
        #expect(store.loadHistory().map(\.outcome) == [.interrupted, .succeeded])
        #expect(store.inProgress == nil)
        #expect(!again.problems.contains { $0.hasPrefix("cannot write history") }, "\(again.problems)")
    }

    /// A disk audit (2 of 2): a deploy that rolled back because the state directory turned
    /// read-only could not remove its deploy.json; after a restart it was recorded a second
    /// time, `interrupted … baton exited before it finished`.
    @Test func anOperationWhoseEndIsInHistoryIsNotRecordedAgain() throws {
        var ended = entry(.deploy, "/srv/app/r9", .rolledBack)
        ended.detail = "cannot persist the release: Read-only file system"
        try store.append([ended])
        store.inProgress = entry(.deploy, "/srv/app/r9", .inProgress)
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        #expect(book.history.map(\.outcome) == [.rolledBack], "\(book.history)")
        #expect(store.inProgress == nil, "the leftover record goes")
        #expect(store.loadHistory().count == 1)
    }

    /// A baton killed after the deploy's commit (release.json names the new release) but
    /// before it removed deploy.json: the deploy succeeded, and history says so once.
    @Test func aDeployKilledAfterItsCommitIsRecordedAsSucceeded() throws {
        try store.save(ReleaseState(current: Release(directory: "/srv/app/r9"), previous: Release(directory: "/srv/app/r1")))
        var running = entry(.deploy, "/srv/app/r9", .inProgress)
        running.previousRelease = "/srv/app/r1"
        store.inProgress = running
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        #expect(book.state.current.directory == "/srv/app/r9")
        let last = try #require(book.history.last)
        #expect(last.release == "/srv/app/r9" && last.outcome == .succeeded && last.duration == 60, "\(last)")
        #expect(last.detail == "committed; baton exited before it finished")
        #expect(book.history.count == 1 && store.inProgress == nil)
        #expect(book.deploysByOutcome == [.succeeded: 1])
        #expect(book.deployed == ["/srv/app/r9"], "retention may prune it once it is old")
    }

    /// Killed after the success was written to history too: nothing more is added.
    @Test func aDeployKilledAfterItsSuccessWasWrittenIsNotRecordedTwice() throws {
        try store.save(ReleaseState(current: Release(directory: "/srv/app/r9"), previous: Release(directory: "/srv/app/r1")))
        var running = entry(.deploy, "/srv/app/r9", .inProgress)
        running.previousRelease = "/srv/app/r1"
        var done = running
        done.outcome = .succeeded
        try store.append([done])
        store.inProgress = running
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        #expect(book.history.map(\.outcome) == [.succeeded], "\(book.history)")
        #expect(store.inProgress == nil)
    }

    /// A deploy of the release already current, killed before its commit: interrupted (the
    /// state was committed by an earlier deploy, or by a baton that did not say which).
    @Test func aRedeployOfTheCurrentReleaseKilledIsInterrupted() throws {
        try store.save(ReleaseState(current: Release(directory: "/srv/app/r9"), previous: Release(directory: "/srv/app/r1"), committedBy: 50))
        var running = entry(.deploy, "/srv/app/r9", .inProgress)
        running.previousRelease = "/srv/app/r9"
        store.inProgress = running
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        #expect(book.history.last?.outcome == .interrupted)
    }

    /// A crash audit: a redeploy of the current release killed just after release.json was
    /// written was recorded as interrupted (2 of 2), though it was committed.
    @Test func aRedeployOfTheCurrentReleaseKilledAfterItsCommitSucceeded() throws {
        var running = entry(.deploy, "/srv/app/r9", .inProgress)
        running.previousRelease = "/srv/app/r9"
        try store.save(
            ReleaseState(current: Release(directory: "/srv/app/r9"), previous: Release(directory: "/srv/app/r1"), committedBy: running.startedAt))
        store.inProgress = running
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 160)
        #expect(book.history.last?.outcome == .succeeded)
        #expect(book.history.last?.detail == "committed; baton exited before it finished")
    }

    @Test func historyIsBoundedAndOnlyDeploysAreCounted() {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        for i in 0..<(StateStore.historyLimit + 5) { book.append(entry(i.isMultiple(of: 2) ? .deploy : .reload, "/srv/app/r\(i)", .succeeded)) }
        #expect(book.history.count == StateStore.historyLimit)
        #expect(book.history.last?.release == "/srv/app/r\(StateStore.historyLimit + 4)")
        #expect(book.deploysByOutcome == [.succeeded: (StateStore.historyLimit + 5 + 1) / 2])
    }

    /// A policy audit: 200 policy restarts after a failed deploy pushed it out of history, and
    /// `baton deploy --attach` answered `no deploy yet`, exit 0. The last deploy or rollback
    /// stays, in the oldest line's place.
    @Test func refusedRequestsDoNotPushTheRestOut() {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        for i in 0..<125 { book.append(entry(i.isMultiple(of: 2) ? .deploy : .reload, "/srv/app/r\(i)", .succeeded)) }
        for _ in 0..<210 { book.append(entry(.deploy, "/srv/app/r9", .refused)) }
        #expect(book.history.count == 125 + StateStore.historyLimit / 10)
        #expect(book.history.first?.release == "/srv/app/r0", "the earlier lines stay")
        #expect(book.history.suffix(StateStore.historyLimit / 10).allSatisfy { $0.outcome == .refused }, "the newest refusals stay")
        book.append(entry(.deploy, "/srv/app/r10", .succeeded))
        #expect(book.history.last?.release == "/srv/app/r10")
    }

    @Test func historyKeepsTheLastDeployBehindAnyNumberOfPolicyRestarts() throws {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        book.append(entry(.deploy, "/srv/app/r0", .succeeded))
        book.append(entry(.deploy, "/srv/app/r1", .failed))
        book.append(entry(.deploy, "/srv/app/r2", .refused))
        for _ in 0..<(StateStore.historyLimit + 5) { book.append(entry(.policy, "/srv/app/r0", .succeeded)) }
        #expect(book.history.count == StateStore.historyLimit)
        #expect(book.history.first == entry(.deploy, "/srv/app/r1", .failed))
        #expect(book.history.dropFirst().allSatisfy { $0.kind == .policy })
        // The state directory's file is trimmed the same way.
        let directory = TestPaths.temporaryDirectory("history")
        defer { TestPaths.remove(directory) }
        let disk = try StateStore(directory: directory)
        try disk.append([entry(.rollback, "/srv/app/r9", .rolledBack)])
        for _ in 0..<3 { try disk.append(Array(repeating: entry(.policy, "/srv/app/r9", .succeeded), count: StateStore.historyLimit)) }
        let lines = disk.loadHistory()
        #expect(lines.count == StateStore.historyLimit && lines.first?.kind == .rollback)
    }

    /// A full state directory: the lines it refused are written, in order, with the next one.
    @Test func historyLinesAFullDiskRefusedAreWrittenWithTheNextOne() {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        book.append(entry(.deploy, "/srv/app/r1", .succeeded))
        store.appendError = SystemError("write", errno: ENOSPC)
        book.append(entry(.deploy, "/srv/app/r2", .failed))
        book.append(entry(.reload, "/srv/app/r2", .succeeded))
        #expect(store.loadHistory().map(\.release) == ["/srv/app/r1"])
        #expect(book.history.count == 3)
        store.appendError = nil
        book.append(entry(.deploy, "/srv/app/r3", .succeeded))
        #expect(store.loadHistory().map(\.release) == ["/srv/app/r1", "/srv/app/r2", "/srv/app/r2", "/srv/app/r3"])
        #expect(store.loadHistory().map(\.kind) == [.deploy, .deploy, .reload, .deploy])
        book.append(entry(.deploy, "/srv/app/r4", .succeeded))
        #expect(store.loadHistory().count == 5, "written once each")
    }

    /// Left by the last review: the lines a full state directory refused were trimmed oldest
    /// first, so after more than 200 of them the last deploy's line was dropped before it was
    /// ever written, while history in memory kept it. The same rule trims both.
    @Test func linesAFullDiskRefusedKeepTheLastDeployBehindAnyNumberOfPolicyRestarts() {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        store.appendError = SystemError("write", errno: ENOSPC)
        book.append(entry(.deploy, "/srv/app/r1", .failed))
        for _ in 0..<(StateStore.historyLimit + 5) { book.append(entry(.policy, "/srv/app/r0", .succeeded)) }
        store.appendError = nil
        book.append(entry(.policy, "/srv/app/r0", .succeeded))
        let written = store.loadHistory()
        #expect(written.first == entry(.deploy, "/srv/app/r1", .failed), "the deploy's line is written")
        #expect(written.count == StateStore.historyLimit)
    }

    /// A limits re-audit: a state directory found full at start-up was shown as not writable
    /// until a deploy succeeded, although space was freed and a reload wrote history since.
    @Test func aStartUpFindingOfAFullDiskGoesOnceHistoryIsWritten() {
        store.checkError = SystemError("write", errno: ENOSPC, subject: "/var/lib/baton/app")
        store.appendError = SystemError("write", errno: ENOSPC)
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        #expect(book.problems.count == 1 && book.problems[0].hasPrefix("state directory /var/lib/baton/app not writable ("), "\(book.problems)")
        book.append(entry(.reload, "/srv/app/r0", .succeeded))
        #expect(book.problems.count == 2, "still full: \(book.problems)")
        store.appendError = nil
        book.append(entry(.reload, "/srv/app/r0", .succeeded))
        #expect(book.problems.isEmpty, "\(book.problems)")
        #expect(store.loadHistory().count == 2)
    }

    /// A starved audit: a reload while baton's descriptors ran out failed as it should, but its
    /// record and its history line failed with EMFILE too, and status said `state directory …
    /// not writable (… Too many open files)` and `cannot write history (1 line(s) kept …)` long
    /// after they came back, until the next operation. The line is written at the next look
    /// (every 5 s), and the want of descriptors goes with the first write that works.
    @Test func aMomentsWantOfDescriptorsGoesAtTheNextLook() throws {
        let log = LogCapture()
        let book = ReleaseBook(
            directory: "/var/lib/baton/app", fallback: fallback, logger: Logger(label: "test") { _ in LogCapture.Handler(capture: log) })
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        store.beginError = SystemError("open", errno: EMFILE, subject: "/var/lib/baton/app/deploy.json")
        store.appendError = SystemError("open", errno: EMFILE, subject: "/var/lib/baton/app/history.jsonl")
        try book.beginOperation(entry(.reload, "/srv/app/r1", .failed))
        book.finishOperation()
        book.append(entry(.reload, "/srv/app/r1", .failed))
        #expect(book.problems.count == 2, "\(book.problems)")
        // Still short at the next looks: said once (a re-audit: logged again every 5 s).
        let loop = try EventLoop()
        for _ in 0..<3 { book.restoreIfGone(reopen: { () throws(DirectoryError) in store }, on: loop) }
        #expect(log.lines(containing: "cannot write history").count == 1, "\(log.lines)")
        (store.beginError, store.appendError) = (nil, nil)
        book.restoreIfGone(reopen: { () throws(DirectoryError) in store }, on: loop)
        #expect(book.problems.isEmpty, "\(book.problems)")
        #expect(store.loadHistory().map(\.kind) == [.reload])
    }

    @Test func deployedFoldersAreRecordedOnceAndForgottenWhenRemoved() {
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        book.recordDeployed(Release(directory: "/srv/app/r1/"))
        book.recordDeployed(Release(directory: "/srv/app/r1"))
        book.recordDeployed(Release(directory: "/srv/app/r2"))
        #expect(book.deployed == ["/srv/app/r1", "/srv/app/r2"] && store.loadDeployedReleases() == book.deployed)
        book.pruningStarted(["/srv/app/r1", "/srv/app/r2"])
        #expect(book.isBeingPruned("/srv/app/r1/"))
        book.pruningFinished(["/srv/app/r1", "/srv/app/r2"], removed: ["/srv/app/r1"])
        #expect(!book.isBeingPruned("/srv/app/r1") && !book.isBeingPruned("/srv/app/r2"))
        #expect(book.deployed == ["/srv/app/r2"] && store.loadDeployedReleases() == ["/srv/app/r2"])
    }

    @Test func theListingLeavesOutFoldersBeingRemoved() throws {
        var template = Array("/tmp/baton-book-XXXXXX".utf8CString)
        let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { try? FileManager.default.removeItem(atPath: root) }
        for name in ["r1", "r2", "r3"] { mkdir(root + "/" + name, 0o755) }
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        try commit(ReleaseState(current: Release(directory: root + "/r3"), previous: Release(directory: root + "/r2")))
        book.recordDeployed(Release(directory: root + "/r1"))
        let before = try book.listing(of: root, keep: 1, inUse: [], batonDirectories: [])
        #expect(before.releases.first { $0.name == "r1" }?.mark == .prune)
        #expect(before.releases.first { $0.name == "r3" }?.mark == .current)
        book.pruningStarted([root + "/r1"])
        let during = try book.listing(of: root, keep: 1, inUse: [], batonDirectories: [])
        #expect(during.releases.map(\.name).sorted() == ["r2", "r3"])
    }

    /// Found by an operator audit: retention compared release paths as text, and removed the
    /// current release deployed as `releases//r9`, and the previous one deployed through a
    /// symlinked folder (`rM` → `r5`) or a symlinked releases directory.
    @Test func retentionKnowsAReleaseByItsFolderNotItsSpelling() throws {
        var template = Array("/tmp/baton-book-XXXXXX".utf8CString)
        let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { try? FileManager.default.removeItem(atPath: root) }
        let releases = root + "/releases"
        mkdir(releases, 0o755)
        for name in ["r5", "r9", "r10", "r11"] { mkdir(releases + "/" + name, 0o755) }
        #expect(symlink(releases + "/r5", releases + "/rM") == 0)
        #expect(symlink(releases, root + "/link") == 0)
        book.load(from: store, fallback: fallback, releaseExists: { _ in true }, now: 200)
        try commit(ReleaseState(current: Release(directory: releases + "//r9"), previous: Release(directory: releases + "/rM")))
        for name in ["r5", "r9", "r10", "r11"] { book.recordDeployed(Release(directory: root + "/link/" + name)) }
        for listed in [releases, root + "/link"] {
            let marks = Dictionary(
                uniqueKeysWithValues: try book.listing(of: listed, keep: 1, inUse: [], batonDirectories: []).releases.map { ($0.name, $0.mark) })
            #expect(marks["r9"] == .current && marks["r5"] == .previous, "\(listed): \(marks)")
            #expect(marks["r10"] == .prune && marks["r11"] == .prune, "\(listed): \(marks)")
        }
    }

    /// `baton deploy --attach` with nothing in progress prints the last entry this way: the
    /// kind as the wire names it, the outcome in words (a CI audit: it read `rolled-back`, the
    /// history column's name; README writes `failed:`).
    @Test func aHistoryLineNamesTheKindAsTheWireDoesAndTheOutcomeInWords() {
        #expect(Supervisor.describe(entry(.rollAhead, "/srv/app/r1", .rolledBack)) == "roll-ahead of /srv/app/r1 rolled back")
        #expect(Supervisor.describe(entry(.deploy, "/srv/app/r2", .timedOut)) == "deploy of /srv/app/r2 timed out")
        #expect(Supervisor.describe(entry(.deploy, "/srv/app/r2", .failed)) == "deploy of /srv/app/r2 failed")
    }
}
