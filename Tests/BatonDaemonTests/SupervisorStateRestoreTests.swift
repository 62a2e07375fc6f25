import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// A state directory removed while baton runs (`rm -rf /var/lib/baton/APP`, a clean-up of
/// /var/lib): every later write failed, and a restart came up on `[app] directory`, the deploys
/// forgotten. The runtime check makes it again with what baton knows.
@Suite struct SupervisorStateRestoreTests {
    @Test func aRemovedStateDirectoryIsWrittenBackFromMemory() throws {
        let h = try DaemonHarness(workers: 2)
        try h.start()
        let r1 = h.makeRelease("r1")
        let first = h.deploy(r1)
        h.finishOperations()
        #expect(first.reply?.ok == true, "\(String(describing: first.reply))")
        let lines = h.supervisor.history.count
        h.host.store.remove()
        h.supervisor.checkRuntimeFiles()
        h.settle()
        let state = try #require(h.host.store.releaseState, "release.json written back")
        #expect(state.current.directory == r1 && state.previous?.directory == h.initialRelease)
        #expect(h.host.store.loadHistory().count == lines)
        #expect(h.host.store.loadDeployedReleases().contains(ReleaseRetention.normalize(r1)))
        // It takes writes again: the next deploy is committed there, its line after the others.
        let r2 = h.makeRelease("r2")
        let second = h.deploy(r2)
        h.finishOperations()
        #expect(second.reply?.ok == true, "\(String(describing: second.reply))")
        #expect(h.host.store.releaseState?.current.directory == r2)
        #expect(h.host.store.loadHistory().count == lines + 1)
        #expect(h.supervisor.releases.problems.isEmpty, "\(h.supervisor.releases.problems)")
    }

    @Test func anotherBatonThatTookTheDirectoryKeepsIt() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.host.store.remove()
        h.host.openStateStoreError = DirectoryError(path: h.root + "/state", reason: .inUse(pid: 4242))
        h.supervisor.checkRuntimeFiles()
        h.settle()
        let problem = h.supervisor.releases.problems.first { $0.contains("was removed or replaced while baton ran and cannot be made again") }
        #expect(problem?.contains("4242") == true, "\(h.supervisor.releases.problems)")
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == false, "nothing is committed into the other baton's directory")
        #expect(h.host.store.releaseState == nil)
        #expect(h.supervisor.slots[0].current?.spec.release == h.initialRelease)
    }

    /// A re-audit: release.json alone removed while baton ran was not noticed; a restart came up
    /// on `[app] directory` and the previous release was lost.
    @Test func aRemovedReleaseStateIsWrittenBack() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        h.host.store.removeReleaseState()
        h.supervisor.checkRuntimeFiles()
        h.settle()
        #expect(h.host.store.releaseState == nil, "nothing was persisted yet: [app] directory stays a fallback")
        let r1 = h.makeRelease("r1")
        let client = h.deploy(r1)
        h.finishOperations()
        #expect(client.reply?.ok == true)
        h.host.store.removeReleaseState()
        h.supervisor.checkRuntimeFiles()
        h.settle()
        let state = try #require(h.host.store.releaseState)
        #expect(state.current.directory == r1 && state.previous?.directory == h.initialRelease)
    }

    /// A CI audit: `release.json` that could not be opened for a moment (baton out of
    /// descriptors, EMFILE) was taken for damaged, its write-back failed the same way, and
    /// status said the state directory was not writable until the next deploy. A read that
    /// fails for want of resources says nothing of the file: the next look reads it again.
    @Test func aReleaseStateThatCannotBeOpenedForAMomentIsNotDamaged() throws {
        let h = try DaemonHarness(workers: 1)
        try h.start()
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == true)
        h.host.store.loadError = SystemError("read", errno: EMFILE, subject: h.root + "/state/release.json")
        h.host.store.saveError = SystemError("open", errno: EMFILE, subject: h.root + "/state/release.json.tmp")
        h.supervisor.checkRuntimeFiles()
        h.settle()
        #expect(h.supervisor.releases.problems.isEmpty, "\(h.supervisor.releases.problems)")
        #expect(h.log.lines(containing: "release.json was damaged").isEmpty, "\(h.log.lines(containing: "release.json"))")
        h.host.store.loadError = nil
        h.host.store.saveError = nil
        h.supervisor.checkRuntimeFiles()
        h.settle()
        #expect(h.supervisor.releases.problems.isEmpty, "\(h.supervisor.releases.problems)")
    }

    /// A day-2 audit: app "appe" started on the state directory app "appb" had used ran appb's
    /// release and command (`release from the state directory`), and its deploy then moved appb
    /// onto appe's release. release.json names its app now; another app's is refused.
    @Test func anotherAppsStateDirectoryIsRefused() throws {
        let h = try DaemonHarness(workers: 1)
        let theirs = h.makeRelease("theirs")
        try h.host.store.save(ReleaseState(current: Release(directory: theirs), previous: nil, app: "appb"))
        let error = #expect(throws: DirectoryError.self) { try h.start() }
        #expect(error?.reason == .otherApp("appb"))
        #expect(error?.description.contains("holds the release state of app \"appb\" (its release.json): two apps must not share a state directory") == true)
        #expect(h.host.store.releaseState?.current.directory == theirs, "left as it was")
        #expect(h.host.children.isEmpty, "no worker started on it")
    }

    /// What a commit writes names the app; a file of an older baton (no app) is taken.
    @Test func releaseJSONNamesItsApp() throws {
        let h = try DaemonHarness(workers: 1)
        let older = h.makeRelease("older")
        try h.host.store.save(ReleaseState(current: Release(directory: older), previous: nil))
        try h.start()
        #expect(h.supervisor.releaseState.current.directory == older)
        let client = h.deploy(h.makeRelease("r1"))
        h.finishOperations()
        #expect(client.reply?.ok == true)
        #expect(h.host.store.releaseState?.app == "fake")
    }
}
