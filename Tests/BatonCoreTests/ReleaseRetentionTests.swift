import BatonCore
import FoundationEssentials
import Testing

@Suite("release retention")
struct ReleaseRetentionTests {
    /// Folders r1 (oldest) ... rN in /srv/shop/releases, one second apart.
    func folders(_ n: Int) -> [ReleaseFolder] {
        (1...n).map { ReleaseFolder(name: "r\($0)", path: "/srv/shop/releases/r\($0)", modifiedAt: Double(1000 + $0)) }
    }

    func marks(_ listings: [ReleaseListing]) -> [String] { listings.map { "\($0.name):\($0.mark.rawValue)" } }

    @Test("keeps the newest K, newest first; the older ones are marked prune")
    func keepsNewest() {
        let plan = ReleaseRetention.plan(
            folders: folders(5), current: "/srv/shop/releases/r5", previous: "/srv/shop/releases/r4", inUse: [], lastDeployed: [:],
            keep: 3)
        #expect(marks(plan) == ["r5:current", "r4:previous", "r3:kept", "r2:prune", "r1:prune"])
    }

    @Test("the current and previous releases are never pruned, even when older than the newest K (after a rollback)")
    func currentAndPreviousAlwaysKept() {
        // Rolled back to r2 (previous r5); r3 and r4 are newer folders.
        let plan = ReleaseRetention.plan(
            folders: folders(5), current: "/srv/shop/releases/r2/", previous: "/srv/shop/releases/r5", inUse: [], lastDeployed: [:],
            keep: 2)
        #expect(marks(plan) == ["r5:previous", "r4:prune", "r3:prune", "r2:current", "r1:prune"])
        #expect(!plan.contains { $0.mark == .prune && ($0.name == "r2" || $0.name == "r5") })
    }

    @Test("the current release counts towards K even when its folder looks older than the others (rsync keeps mtimes)")
    func protectedCountFirst() {
        var folders = folders(3)
        folders[0].modifiedAt = 9999  // r1 made on the host just now; r2, r3 shipped with old mtimes
        let plan = ReleaseRetention.plan(
            folders: folders, current: "/srv/shop/releases/r3", previous: "/srv/shop/releases/r2", inUse: [], lastDeployed: [:], keep: 2)
        #expect(marks(plan) == ["r1:prune", "r3:current", "r2:previous"])
    }

    @Test("a folder a worker still runs in is never pruned")
    func inUseKept() {
        let plan = ReleaseRetention.plan(
            folders: folders(4), current: "/srv/shop/releases/r4", previous: "/srv/shop/releases/r3", inUse: ["/srv/shop/releases/r1"],
            lastDeployed: [:], keep: 2)
        #expect(marks(plan) == ["r4:current", "r3:previous", "r2:prune", "r1:in-use"])
    }

    /// An operator-release audit: the current, previous or an in-use release one level down
    /// (`releases/42/backend`) left its folder `releases/42` unprotected: retention removed it,
    /// a rollback then had nothing to go to, and a respawn failed on chdir.
    @Test("a folder holding the current, previous or an in-use release is never pruned")
    func foldersHoldingAReleaseKept() {
        let plan = ReleaseRetention.plan(
            folders: folders(6), current: "/srv/shop/releases/r6", previous: "/srv/shop/releases/r1/backend",
            inUse: ["/srv/shop/releases/r2/sub/app"], lastDeployed: [:], keep: 3)
        #expect(marks(plan) == ["r6:current", "r5:prune", "r4:prune", "r3:prune", "r2:in-use", "r1:previous"])
        let holdingCurrent = ReleaseRetention.plan(
            folders: folders(3), current: "/srv/shop/releases/r1/backend/", previous: nil, inUse: [], lastDeployed: [:], keep: 1)
        #expect(marks(holdingCurrent) == ["r3:prune", "r2:prune", "r1:current"])
        // A sibling whose name only begins like it is not holding it.
        let sibling = ReleaseRetention.plan(
            folders: folders(3) + [ReleaseFolder(name: "r1x", path: "/srv/shop/releases/r1x", modifiedAt: 1)], current: "/srv/shop/releases/r3",
            previous: "/srv/shop/releases/r1x", inUse: [], lastDeployed: [:], keep: 2)
        #expect(marks(sibling) == ["r3:current", "r2:prune", "r1:prune", "r1x:previous"])
    }

    @Test("the folders a path goes through before a .. are named, as written")
    func foldersPassedThrough() {
        #expect(ReleaseRetention.foldersPassedThrough("/r/H/../J") == ["/r/H"])
        #expect(ReleaseRetention.foldersPassedThrough("/r/F/../X/y/z/backend/") == ["/r/F"])
        #expect(ReleaseRetention.foldersPassedThrough("/r/a/b/../../c/./d/../e") == ["/r/a/b", "/r/a", "/r/c/d"])
        #expect(ReleaseRetention.foldersPassedThrough("/r//s/t") == [])
        #expect(ReleaseRetention.foldersPassedThrough("/../r") == [])
        // A link's target walked as the kernel walks it (a re-audit 2: `current` → `releases/x/../z`).
        let links = ["/d/current": "releases/x/../z", "/d/abs": "/r/a/../b", "/d/loop": "/d/loop"]
        #expect(ReleaseRetention.foldersPassedThrough("/d/current", readlink: { links[$0] }) == ["/d/releases/x"])
        #expect(ReleaseRetention.foldersPassedThrough("/d/abs/c", readlink: { links[$0] }) == ["/r/a"])
        #expect(ReleaseRetention.foldersPassedThrough("/d/loop", readlink: { links[$0] }) == [])
    }

    @Test("age is the last successful deploy when later than the folder's mtime")
    func lastDeployedOrders() {
        let history = [
            HistoryEntry(
                kind: .deploy, release: "/srv/shop/releases/r1", previousRelease: nil, outcome: .succeeded, detail: nil, startedAt: 5000, duration: 2, uid: 0),
            HistoryEntry(
                kind: .deploy, release: "/srv/shop/releases/r2", previousRelease: nil, outcome: .rolledBack, detail: "x", startedAt: 6000, duration: 1,
                uid: 0),
            HistoryEntry(
                kind: .reload, release: "/srv/shop/releases/r3", previousRelease: nil, outcome: .succeeded, detail: nil, startedAt: 7000, duration: 1, uid: 0),
        ]
        let times = ReleaseRetention.lastDeployed(history)
        #expect(times == [PathKey("/srv/shop/releases/r1"): 5002])
        let plan = ReleaseRetention.plan(
            folders: folders(4), current: "/srv/shop/releases/r4", previous: nil, inUse: [], lastDeployed: times, keep: 2)
        #expect(marks(plan) == ["r1:kept", "r4:current", "r3:prune", "r2:prune"])
        #expect(plan.first?.lastUsedAt == 5002)
    }

    /// A time audit: r2 deployed while the clock was a day ahead, then r3, r4, r5 with the
    /// clock right: retention ranked r2 newest (its deploy's time) and removed r3, deployed
    /// 10 s before r5.
    @Test("the folders deployed are ranked by the order of their deploys, not by the clock's times")
    func deployOrderOverTheClock() {
        let day = 86_400.0
        let deploys = [("r2", 5000 + day), ("r3", 5010), ("r4", 5020), ("r5", 5030)]
        let history = deploys.map { name, time in
            HistoryEntry(
                kind: .deploy, release: "/srv/shop/releases/" + name, previousRelease: nil, outcome: .succeeded, detail: nil, startedAt: time, duration: 1,
                uid: 0)
        }
        let plan = ReleaseRetention.plan(
            folders: folders(5), current: "/srv/shop/releases/r5", previous: "/srv/shop/releases/r4", inUse: [],
            lastDeployed: ReleaseRetention.lastDeployed(history), deployOrder: ReleaseRetention.deployOrder(history), keep: 3)
        #expect(marks(plan) == ["r5:current", "r4:previous", "r3:kept", "r2:prune", "r1:prune"])
    }

    @Test("no keep (retention off): every folder is kept")
    func retentionOff() {
        let plan = ReleaseRetention.plan(
            folders: folders(4), current: "/srv/shop/releases/r4", previous: nil, inUse: [], lastDeployed: [:], keep: nil)
        #expect(plan.allSatisfy { $0.mark == .kept || $0.mark == .current })
    }

    @Test("the table: header, marks and ages, newest first")
    func table() {
        let report = ReleasesReport(
            directory: "/srv/shop/releases", keep: 2,
            releases: [
                ReleaseListing(name: "r3", path: "/srv/shop/releases/r3", mark: .current, lastUsedAt: 10_000 - 125),
                ReleaseListing(name: "r1", path: "/srv/shop/releases/r1", mark: .prune, lastUsedAt: 10_000 - 90_000),
            ])
        #expect(
            report.table(now: 10_000) == """
                /srv/shop/releases: 2 releases, keep_releases = 2
                MARK      AGE       RELEASE
                current   2m5s      r3
                prune     1d1h      r1
                """)
    }

    @Test("protocol: releases is read-only, prune-releases changes state; both decode; the report round-trips")
    func protocolVerbs() throws {
        #expect(ControlProtocol.readOnlyCommands.contains("releases"))
        #expect(ControlProtocol.mutatingCommands.contains("prune-releases"))
        for verb in ["releases", "prune-releases"] {
            #expect((try? ControlProtocol.decodeRequest(Array("{\"v\":1,\"cmd\":\"\(verb)\"}".utf8)).get())?.cmd == verb)
        }
        let report = ReleasesReport(
            directory: "/srv/shop/releases", keep: 5,
            releases: [ReleaseListing(name: "r1", path: "/srv/shop/releases/r1", mark: .inUse, lastUsedAt: 1)], removed: ["/srv/shop/releases/r0"])
        let line = ControlProtocol.encodeLine(ControlReply.success(payload: .releases(report)))
        #expect(String(decoding: line, as: UTF8.self).contains("\"mark\":\"in-use\""))
        let decoded = try JSONDecoder().decode(ControlReply.self, from: Data(line.dropLast()))
        #expect(decoded.releases == report)
    }

    @Test("paths: trailing slashes and parents")
    func paths() {
        #expect(ReleaseRetention.normalize("/srv/a/r1//") == "/srv/a/r1")
        #expect(ReleaseRetention.normalize("/") == "/")
        #expect(ReleaseRetention.parent(of: "/srv/a/r1/") == "/srv/a")
        #expect(ReleaseRetention.parent(of: "/r1") == "/")
    }

    @Test("config: releases_directory must be absolute; it is read without a trailing slash")
    func config() throws {
        #expect(
            configFailure(minimalApp + "[deploy]\nreleases_directory = \"srv/shop\"\n")
                == #"/etc/baton/shop.toml:7: deploy.releases_directory: must be an absolute path, got "srv/shop""#)
        let config = try parseConfig(minimalApp + "[deploy]\nreleases_directory = \"/srv/shop/releases/\"\nkeep_releases = 3\n")
        #expect(config.deploy.releasesDirectory == "/srv/shop/releases")
        #expect(config.deploy.keepReleases == 3)
        #expect(try parseConfig(minimalApp).deploy.releasesDirectory == nil)
    }
}

/// Retention removes only folders baton deployed, never one holding its own directories.
@Suite("release retention: only what baton deployed")
struct ReleaseRetentionDeployedTests {
    func folder(_ name: String, _ time: Double) -> ReleaseFolder {
        ReleaseFolder(name: name, path: "/srv/shop/" + name, modifiedAt: time)
    }

    @Test("folders baton did not deploy are marked not-deployed, never pruned, and do not count towards keep")
    func notDeployedKept() {
        let folders = [folder("r1", 1), folder("data", 2), folder("r2", 3), folder("r3", 4), folder("r4", 5), folder("r5", 6)]
        let plan = ReleaseRetention.plan(
            folders: folders, current: "/srv/shop/r5", previous: "/srv/shop/r4", inUse: [], lastDeployed: [:], keep: 3,
            deployed: ["/srv/shop/r2", "/srv/shop/r3", "/srv/shop/r4/", "/srv/shop/r5"])
        #expect(plan.map { "\($0.name):\($0.mark.rawValue)" } == ["r5:current", "r4:previous", "r3:kept", "r2:prune", "data:not-deployed", "r1:not-deployed"])
    }

    @Test("a recorded folder holding baton's state, runtime or config directory is never pruned")
    func batonDirectoriesKept() {
        let folders = [folder("state", 1), folder("run", 2), folder("r1", 3), folder("r2", 4), folder("r3", 5)]
        let plan = ReleaseRetention.plan(
            folders: folders, current: "/srv/shop/r3", previous: "/srv/shop/r2", inUse: [], lastDeployed: [:], keep: 2,
            deployed: ["/srv/shop/state", "/srv/shop/run", "/srv/shop/r1", "/srv/shop/r2", "/srv/shop/r3"],
            batonDirectories: ["/srv/shop/state/", "/srv/shop/run/app", "/etc/baton"])
        #expect(plan.map { "\($0.name):\($0.mark.rawValue)" } == ["r3:current", "r2:previous", "r1:prune", "run:baton-dir", "state:baton-dir"])
    }

    /// An operator audit: with `[app] directory` in the releases folder, deploys of four other
    /// releases pruned it once a deploy had gone back to it; a baton whose release.json was then
    /// unreadable failed to start ("chdir …: No such file or directory").
    @Test("[app] directory is never pruned, deployed or not, and does not count towards keep")
    func appDirectoryKept() {
        let folders = [folder("a", 1), folder("b", 2), folder("c", 3), folder("d", 4)]
        let plan = ReleaseRetention.plan(
            folders: folders, current: "/srv/shop/d", previous: "/srv/shop/c", inUse: [], lastDeployed: [:], keep: 2,
            deployed: ["/srv/shop/a", "/srv/shop/b", "/srv/shop/c", "/srv/shop/d"], appDirectory: "/srv/shop/a/")
        #expect(plan.map { "\($0.name):\($0.mark.rawValue)" } == ["d:current", "c:previous", "b:prune", "a:app-dir"])
    }

    /// An operator audit: `not-deployed` (12 letters) pushed its rows' AGE and RELEASE out of line.
    @Test("baton releases' table lines up, not-deployed rows too; without them it is 10 columns wide as before")
    func tableLinesUp() {
        func listing(_ name: String, _ mark: ReleaseListing.Mark, _ age: Double) -> ReleaseListing {
            ReleaseListing(name: name, path: "/srv/shop/" + name, mark: mark, lastUsedAt: 100_000 - age)
        }
        let report = ReleasesReport(
            directory: "/srv/shop", keep: 3,
            releases: [listing("r5", .current, 10), listing("data", .notDeployed, 7200), listing("r1", .prune, 3 * 86400)])
        #expect(
            report.table(now: 100_000).split(separator: "\n").map(String.init) == [
                "/srv/shop: 3 releases, keep_releases = 3",
                "MARK          AGE       RELEASE",
                "current       10s       r5",
                "not-deployed  2h0m      data",
                "prune         3d0h      r1",
            ])
        let short = ReleasesReport(directory: "/srv/shop", keep: nil, releases: [listing("r5", .current, 10)])
        #expect(
            short.table(now: 100_000).split(separator: "\n").map(String.init) == [
                "/srv/shop: 1 release, retention off (no [deploy] releases_directory)",
                "MARK      AGE       RELEASE",
                "current   10s       r5",
            ])
    }

    /// A re-audit: a folder named `X<newline>Y` split its row in two (it became current through
    /// a link), and `X ESC[31m Y` coloured the terminal. Control characters show as `?`.
    @Test("a folder named with control characters is one row, shown with ?")
    func controlCharactersInANameAreShownAsQuestionMarks() {
        let report = ReleasesReport(
            directory: "/srv/shop", keep: 3,
            releases: [ReleaseListing(name: "X\nY\u{1B}[31m", path: "/srv/shop/X\nY\u{1B}[31m", mark: .current, lastUsedAt: 99_990)])
        #expect(report.table(now: 100_000).split(separator: "\n").last == "current   10s       X?Y?[31m")
    }

    /// A names audit: `noël` in NFC (deployed) and in NFD (copied in by hand, never deployed)
    /// are two folders on Linux; Swift's String equality took them for one, and retention
    /// pruned both ("pruning 2 old releases: noël, noël").
    @Test("folders whose names differ only in Unicode normalization are told apart")
    func unicodeNormalizationTwins() {
        let nfc = "/srv/shop/no\u{EB}l"
        let nfd = "/srv/shop/noe\u{308}l"
        #expect(nfc == nfd, "Swift's String equality, which retention must not use")
        #expect(PathKey(nfc) != PathKey(nfd) && PathKey(nfc + "/") == PathKey(nfc))
        let folders = [
            ReleaseFolder(name: "no\u{EB}l", path: nfc, modifiedAt: 100), ReleaseFolder(name: "noe\u{308}l", path: nfd, modifiedAt: 101),
            ReleaseFolder(name: "r2", path: "/srv/shop/r2", modifiedAt: 200), ReleaseFolder(name: "r3", path: "/srv/shop/r3", modifiedAt: 300),
            ReleaseFolder(name: "r4", path: "/srv/shop/r4", modifiedAt: 400),
        ]
        let plan = ReleaseRetention.plan(
            folders: folders, current: "/srv/shop/r4", previous: "/srv/shop/r3", inUse: [], lastDeployed: [:], keep: 2,
            deployed: [nfc, "/srv/shop/r2", "/srv/shop/r3", "/srv/shop/r4"])
        let marks = Dictionary(uniqueKeysWithValues: plan.map { (Array($0.path.utf8), $0.mark) })
        #expect(marks[Array(nfc.utf8)] == .prune)
        #expect(marks[Array(nfd.utf8)] == .notDeployed, "never deployed: never removed")
        // The current one's twin is not current.
        let twin = ReleaseRetention.plan(folders: Array(folders.prefix(2)), current: nfc, previous: nil, inUse: [], lastDeployed: [:], keep: nil)
        #expect(twin.map(\.mark).sorted { $0.rawValue < $1.rawValue } == [.current, .kept])
    }
}
