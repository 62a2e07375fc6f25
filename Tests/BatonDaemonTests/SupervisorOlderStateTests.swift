import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Logging
import Testing

/// State files a baton before this version wrote, read by this one (a versions audit, live
/// upgrades and restarts both ways). Fake host and clock, real folders and links.
@Suite struct SupervisorOlderStateTests {
    func flip(_ link: String, to target: String) {
        unlink(link)
        #expect(symlink(target, link) == 0)
    }

    /// The version before recorded the previous release as the path deployed: Capistrano's
    /// `current`, deployed through twice, then a folder deployed. Read by this version, then
    /// the link flipped to a fresh upload: `rollback` went to the upload (exit 0, the log
    /// silent) and retention pruned the release that had run.
    @Test func aPreviousReleaseRecordedAsALinkIsPinnedToItsFolderWhenRead() throws {
        let h = try DaemonHarness(workers: 2) { $0.deploy.stabilityWindow = .zero }
        let r2 = h.makeRelease("r2")
        let r3 = h.makeRelease("r3")
        let upload = h.makeRelease("r5")
        let link = h.root + "/current"
        flip(link, to: r2)
        try h.host.store.save(ReleaseState(current: Release(directory: r3), previous: Release(directory: link)))
        try h.start()
        #expect(h.supervisor.releaseState.previous?.directory == Supervisor.resolved(r2))
        #expect(h.host.store.releaseState?.previous?.directory == Supervisor.resolved(r2), "written so")
        #expect(h.log.lines(containing: "pinned to that folder").count == 1)
        flip(link, to: upload)
        let rollback = h.rollback()
        h.finishOperations()
        #expect(rollback.reply?.ok == true, "\(String(describing: rollback.reply))")
        #expect(Set(h.supervisor.slots.compactMap { $0.current?.folder }) == [Supervisor.resolved(r2)])
    }

    /// The same across `baton upgrade`: the state the older image hands over is pinned too; a
    /// previous release that is a folder already, or whose link leads nowhere, stays as it is.
    @Test func aPreviousReleaseHandedOverAsALinkIsPinned() throws {
        let h = try DaemonHarness(workers: 1)
        let r2 = h.makeRelease("r2")
        let link = h.root + "/current"
        flip(link, to: r2)
        let book = ReleaseBook(directory: h.root + "/state", fallback: Release(directory: h.initialRelease), logger: Logger(label: "test"))
        book.restore(state: ReleaseState(current: Release(directory: h.initialRelease), previous: Release(directory: link)), deploysByOutcome: [:])
        #expect(book.state.previous?.directory == Supervisor.resolved(r2))
        book.restore(state: ReleaseState(current: Release(directory: link), previous: Release(directory: r2)), deploysByOutcome: [:])
        #expect(book.state.previous?.directory == r2)
    }

    /// A re-audit: the folder a recorded link named was moved away before the upgrade (the link
    /// names nothing, nothing was pinned or said), then the link was flipped to a fresh upload:
    /// `rollback` went there (exit 0). A link that names no folder when first read is no
    /// previous release; said once, also across an upgrade's two reads.
    @Test func aPreviousReleaseRecordedAsALinkToNothingIsNone() throws {
        let h = try DaemonHarness(workers: 1) { $0.deploy.stabilityWindow = .zero }
        let r3 = h.makeRelease("r3")
        let upload = h.makeRelease("r5")
        let link = h.root + "/current"
        flip(link, to: h.root + "/r2-moved-away")
        let state = ReleaseState(current: Release(directory: r3), previous: Release(directory: link))
        try h.host.store.save(state)
        try h.start()
        #expect(h.supervisor.releaseState.previous == nil)
        #expect(h.host.store.releaseState?.previous == nil, "written so")
        h.supervisor.releases.restore(state: state, deploysByOutcome: [:])
        #expect(h.log.lines(containing: "which names no folder now: no previous release").count == 1)
        flip(link, to: upload)
        let rollback = h.rollback()
        h.finishOperations()
        #expect(rollback.reply?.ok == false, "\(String(describing: rollback.reply))")
        #expect(h.supervisor.slots[0].current?.folder == Supervisor.resolved(r3))
    }
}
