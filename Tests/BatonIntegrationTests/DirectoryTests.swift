import BatonCore
import BatonSystem
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

/// mode & 0o7777 and owner of `path`, nil when it does not exist.
private func modeAndOwner(_ path: String) -> (mode: mode_t, uid: uid_t, gid: gid_t)? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return (info.st_mode & 0o7777, info.st_uid, info.st_gid)
}

/// A directory made with exactly `mode` (mkdir applies the umask).
private func makeDirectory(_ path: String, mode: mode_t) {
    _ = mkdir(path, mode)
    chmod(path, mode)
}

extension Integration {
    /// baton never changes or deletes what it did not create: existing state and
    /// runtime directories keep their owner and mode, the stop clean-up removes only
    /// what baton made, check-config refuses system and overlapping directories, and
    /// retention prunes only release folders baton deployed.
    @Suite("directories")
    struct DirectoryTests {
        @Test("existing state and runtime directories (and a notify dir and files in them) keep their mode and owner through serve and stop")
        func existingDirectoriesUntouched() throws {
            let directory = TestPaths.temporaryDirectory("dir-keep")
            defer { TestPaths.remove(directory) }
            let state = directory + "/state"
            let run = directory + "/run"
            // The temp directory (0700 from mkdtemp) also holds the control socket.
            let paths = [state, run, run + "/notify", run + "/mine.txt", state + "/mine.txt", run + "/notify/mine.sock", directory]
            var before: [(mode: mode_t, uid: uid_t, gid: gid_t)?] = []
            let baton = try BatonHarness(
                workers: 1, tag: "dir-keep",
                beforeStart: { _ in
                    makeDirectory(state, mode: 0o755)
                    makeDirectory(run, mode: 0o750)
                    makeDirectory(run + "/notify", mode: 0o755)
                    TestPaths.write(run + "/mine.txt", "not baton's\n")
                    TestPaths.write(state + "/mine.txt", "not baton's\n")
                    TestPaths.write(run + "/notify/mine.sock", "a file, not a socket\n", mode: 0o600)
                    before = paths.map(modeAndOwner)
                }, reuse: directory)
            #expect(before.allSatisfy { $0 != nil })
            let running = paths.map(modeAndOwner)
            #expect(running.map { $0?.mode } == [0o755, 0o750, 0o755, 0o644, 0o644, 0o600, 0o700], "\(running)")
            #expect(baton.stop(keepDirectory: true) == 0)
            let after = paths.map(modeAndOwner)
            #expect(after.map { $0?.mode } == [0o755, 0o750, 0o755, 0o644, 0o644, 0o600, 0o700], "\(paths): \(after)")
            #expect(after.map { $0?.uid } == before.map { $0?.uid })
            #expect(after.map { $0?.gid } == before.map { $0?.gid })
            #expect(ProcFS.read(run + "/mine.txt") == "not baton's\n")
        }

        @Test("an existing empty notify dir survives stop; one baton created gets 0711 and goes at stop (also after an in-place upgrade)")
        func notifyDirectoryOwnership() throws {
            let existing = TestPaths.temporaryDirectory("dir-ntf")
            defer { TestPaths.remove(existing) }
            let kept = try BatonHarness(
                workers: 1, tag: "dir-ntf",
                beforeStart: { dir in
                    makeDirectory(dir + "/run/", mode: 0o755); makeDirectory(dir + "/run/notify", mode: 0o711)
                },
                reuse: existing)
            // Who made it crosses the execve of `baton upgrade`.
            let keptUpgrade = try kept.cli(["upgrade"])
            #expect(keptUpgrade.code == 0, "\(keptUpgrade.stderr)")
            #expect(kept.stop(keepDirectory: true) == 0)
            #expect(modeAndOwner(existing + "/run/notify")?.mode == 0o711, "the empty notify dir baton did not make is still there")

            let fresh = try BatonHarness(workers: 1, tag: "dir-new")
            defer { TestPaths.remove(fresh.directory) }
            #expect(modeAndOwner(fresh.directory + "/run")?.mode == 0o755)
            #expect(modeAndOwner(fresh.directory + "/run/notify")?.mode == 0o711)
            #expect(modeAndOwner(fresh.directory + "/state")?.mode == 0o750)
            let freshUpgrade = try fresh.cli(["upgrade"])
            #expect(freshUpgrade.code == 0, "\(freshUpgrade.stderr)")
            #expect(fresh.stop(keepDirectory: true) == 0)
            #expect(modeAndOwner(fresh.directory + "/run/notify") == nil, "baton's own notify dir is removed at stop")
            #expect(modeAndOwner(fresh.directory + "/run") != nil)
        }

        /// Writes `DIRECTORY/baton.toml`: one demo worker, runtime and state directories in
        /// `directory`, `controlSocket`; returns its path.
        static func writeConfig(in directory: String, controlSocket: String) -> String {
            let path = directory + "/baton.toml"
            TestPaths.write(
                path,
                """
                [app]
                name = "test"
                command = ["\(TestPaths.executable("baton-demo-worker"))"]
                directory = "\(directory)"
                workers = 1
                runtime_directory = "\(directory)/run"
                state_directory = "\(directory)/state"
                [listen]
                addresses = ["127.0.0.1:0"]
                [control]
                socket = "\(controlSocket)"
                """)
            return path
        }

        /// Found by an operator audit: `/run/baton/NAME`, made for the default control socket of a
        /// config with its own runtime directory, was left behind at stop.
        @Test("the folders baton made for its control socket go at stop, the ones that existed stay")
        func controlSocketFoldersGoAtStop() throws {
            let directory = TestPaths.temporaryDirectory("dir-ctl")
            defer { TestPaths.remove(directory) }
            let path = Self.writeConfig(in: directory, controlSocket: directory + "/made/by/baton/control.sock")
            let serve = try TestProcess([TestPaths.executable("baton"), "serve", "--config", path])
            #expect(serve.waitForLine(containing: "all 1 workers ready", timeout: .seconds(20)) != nil)
            #expect(modeAndOwner(directory + "/made/by/baton") != nil)
            #expect(serve.stop() == 0)
            #expect(modeAndOwner(directory + "/made") == nil, "the folders baton made for its control socket are gone")
            #expect(modeAndOwner(directory) != nil)
        }

        @Test("a state directory others may write in is refused at start: one line naming the key, exit 2, mode untouched")
        func worldWritableStateRefused() throws {
            let directory = TestPaths.temporaryDirectory("dir-ww")
            defer { TestPaths.remove(directory) }
            makeDirectory(directory + "/state", mode: 0o777)
            let path = Self.writeConfig(in: directory, controlSocket: directory + "/control.sock")
            let serve = try TestProcess.run([TestPaths.executable("baton"), "serve", "--config", path], timeout: .seconds(20))
            #expect(serve.code == 2, "\(serve.stderr)")
            // Refused by the config's host check (as check-config does), with the config's line.
            #expect(
                serve.stderr.split(separator: "\n").last?.hasSuffix(
                    ":7: app.state_directory: \(directory)/state is writable by others (mode 777): refusing to use it; baton never changes a directory it did not create (chmod o-w \(directory)/state, or let baton create a new one)"
                ) == true,
                "\(serve.stderr)")
            let check = try TestProcess.run([TestPaths.executable("baton"), "check-config", path], timeout: .seconds(20))
            #expect(check.code == 2 && check.stderr.contains("app.state_directory: \(directory)/state is writable by others"), "\(check.stderr)")
            #expect(modeAndOwner(directory + "/state")?.mode == 0o777)
        }

        /// An operator audit: two batons given one state directory (other ports, runtime
        /// directories and control sockets) both started; each overwrote the other's
        /// release.json, and one's retention removed the other's previous release.
        @Test("a second baton on a state directory in use is refused: one line naming the holder, exit 2, the first one untouched")
        func sharedStateDirectoryRefused() throws {
            let directory = TestPaths.temporaryDirectory("dir-lock")
            defer { TestPaths.remove(directory) }
            let (serve, second) = try Self.batonAndASecondConfig(in: directory)
            defer { _ = serve.stop() }
            let refused = try TestProcess.run([TestPaths.executable("baton"), "serve", "--config", second], timeout: .seconds(20))
            #expect(refused.code == 2, "exit \(refused.code): \(refused.stderr)")
            #expect(
                refused.stderr.split(separator: "\n").last?.hasSuffix(
                    "app.state_directory: \(directory)/state is in use by another baton (pid \(serve.pid)): two batons must not share a state directory (each writes which release runs)"
                ) == true, "\(refused.stderr)")
            #expect(serve.exitCode == nil)
            #expect(serve.stop() == 0)
            // Once the first one stopped, the directory is free.
            let next = try TestProcess([TestPaths.executable("baton"), "serve", "--config", second])
            #expect(next.waitForLine(containing: "all 1 workers ready", timeout: .seconds(20)) != nil, "\(next.stderrLines)")
            #expect(next.stop() == 0)
        }

        /// A baton serving (`one.sock`, its workers ready) and the config of a second one on the
        /// same state directory (its own runtime directory and control socket `two.sock`).
        static func batonAndASecondConfig(in directory: String) throws -> (TestProcess, String) {
            let first = writeConfig(in: directory, controlSocket: directory + "/one.sock")
            let serve = try TestProcess([TestPaths.executable("baton"), "serve", "--config", first])
            #expect(serve.waitForLine(containing: "all 1 workers ready", timeout: .seconds(20)) != nil)
            let second = directory + "/two.toml"
            TestPaths.write(
                second,
                (ProcFS.read(first) ?? "").replacingOccurrences("\(directory)/run", with: "\(directory)/run2")
                    .replacingOccurrences("one.sock", with: "two.sock"))
            return (serve, second)
        }

        /// A careless-operator audit: `serve` on a port in use exited 1 and left its empty
        /// `notify` folder (and a unix listener's socket file bound before the failure).
        @Test("a serve that fails on a port in use leaves nothing it made under its runtime directory")
        func failedStartLeavesNoRuntimeFiles() throws {
            let directory = TestPaths.temporaryDirectory("dir-busy")
            defer { TestPaths.remove(directory) }
            let taken = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 4)
            let path = Self.writeConfig(in: directory, controlSocket: directory + "/run/control.sock")
            TestPaths.write(
                path,
                (ProcFS.read(path) ?? "").replacingOccurrences(
                    #"addresses = ["127.0.0.1:0"]"#, with: #"addresses = ["unix:\#(directory)/web.sock", "\#(taken.address)"]"#))
            let result = try TestProcess.run([TestPaths.executable("baton"), "serve", "--config", path], timeout: .seconds(20))
            #expect(result.code == 1, "exit \(result.code): \(result.stderr)")
            #expect(result.stderr.contains("Address already in use"), "\(result.stderr)")
            // Who holds the port (a version audit: only "Address already in use" while the
            // orphaned workers of a baton that kept no record served on it).
            #expect(result.stderr.contains("; held by pid \(getpid()) ("), "\(result.stderr)")
            let left = (Filesystem.entryNames(of: directory + "/run") ?? []).filter { $0 != "." && $0 != ".." }
            #expect(left.isEmpty, "left: \(left)")
            #expect(access(directory + "/web.sock", F_OK) != 0, "the unix listener bound before the failure is left")
        }

        /// A listeners audit: seven seconds after `rm` of a unix listener's file, status said
        /// `2/2 workers ready` with no problem while every connect failed; and a baton stopped
        /// after another process bound the path unlinked that one's live socket.
        @Test("a unix listener's file removed is said and shown in status; a socket bound at its path since stays at stop")
        func aRemovedUnixListenerFile() throws {
            let folder = TestPaths.temporaryDirectory("unix-gone")
            defer { TestPaths.remove(folder) }
            let path = folder + "/web.sock"
            let sections = BatonHarness.defaultSections.replacingOccurrences(
                #"addresses = ["127.0.0.1:0"]"#, with: #"addresses = ["127.0.0.1:0", "unix:\#(path)"]"#)
            let baton = try BatonHarness(workers: 1, sections: sections, tag: "unix-gone")
            defer { baton.stop() }
            #expect(unlink(path) == 0)
            let line = baton.process.waitForLine(containing: "listening socket unix:\(path): its file was removed", timeout: .seconds(20))
            #expect(line?.contains("no client can connect to it; restart baton to bind it again") == true, "\(String(describing: line))")
            #expect(try baton.status().problems?.contains { $0.hasPrefix("listening socket unix:\(path): its file was removed") } == true)
            // Another process's socket at the path now: baton's stop leaves it, after an upgrade
            // too (a re-audit: the next image recorded the file it found, the other one's).
            let other = try Sockets.bind(.unix(path: path), mode: 0o600, backlog: 4)
            let upgrade = try baton.cli(["upgrade"])
            #expect(upgrade.code == 0, "\(upgrade.stderr)")
            #expect(try baton.status().problems?.contains { $0.hasPrefix("listening socket unix:\(path): its file was removed") } == true)
            #expect(baton.stop(keepDirectory: true) == 0)
            withExtendedLifetime(other) { #expect(Sockets.unixSocketAnswers(path), "the other socket's file was removed at baton's stop") }
        }

        /// A temp folder anyone may write in, and the text of `writeConfig`'s config there (for
        /// baton run as nobody).
        static func folderForNobody(_ tag: String) -> (directory: String, config: String) {
            let directory = TestPaths.temporaryDirectory(tag)
            chmod(directory, 0o777)
            return (directory, ProcFS.read(writeConfig(in: directory, controlSocket: directory + "/c.sock")) ?? "")
        }

        /// A pid-1 audit: a user not root whose config left the runtime directory or the control
        /// socket at its default got `mkdir /run/baton: Permission denied`, no key named.
        @Test("a default directory or control socket a user cannot make is named as the default, with its key")
        func defaultPathsNamedWithTheirKeys() throws {
            let (directory, text) = Self.folderForNobody("dir-dflt")
            defer { TestPaths.remove(directory) }
            let nobody = ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", TestPaths.executable("baton"), "serve", "--config"]
            let noRuntime = directory + "/no-runtime.toml"
            TestPaths.write(noRuntime, text.replacingOccurrences("runtime_directory = \"\(directory)/run\"\n", with: ""))
            let runtime = try TestProcess.run(nobody + [noRuntime], timeout: .seconds(20))
            #expect(runtime.code == 2, "exit \(runtime.code): \(runtime.stderr)")
            #expect(runtime.stderr.contains("runtime directory (the default; [app] runtime_directory sets it): "), "\(runtime.stderr)")
            let noSocket = directory + "/no-socket.toml"
            TestPaths.write(noSocket, text.replacingOccurrences("[control]\nsocket = \"\(directory)/c.sock\"", with: ""))
            let socket = try TestProcess.run(nobody + [noSocket], timeout: .seconds(20))
            #expect(socket.code == 2, "exit \(socket.code): \(socket.stderr)")
            #expect(socket.stderr.contains("baton: [control] socket (the default /run/baton/test/control.sock): "), "\(socket.stderr)")
            // check-config says so as a note, exit 0: the config may be checked by one user for
            // a root service (a pid-1 audit: it said only "ok").
            let checked = try TestProcess.run(Array(nobody.dropLast(2)) + ["check-config", noRuntime], timeout: .seconds(20))
            #expect(checked.code == 0, "exit \(checked.code): \(checked.stderr)")
            #expect(
                checked.stdout.contains("note: the runtime directory /run/baton/test (the default) cannot be made or written by uid 65534 (/run"),
                "\(checked.stdout)")
            #expect(!checked.stdout.contains("state directory"), "its own, set and writable: \(checked.stdout)")
        }

        /// A re-audit: a baton not root with `[app] user` another user passed check-config, then
        /// every start failed on "switching user: Operation not permitted", no key named.
        @Test("[app] user another than baton's own, without the capabilities to switch: check-config and serve exit 2 naming the key")
        func userBatonCannotBecome() throws {
            let (directory, text) = Self.folderForNobody("dir-user")
            defer { TestPaths.remove(directory) }
            let asRoot = directory + "/as-root.toml"
            TestPaths.write(asRoot, text.replacingOccurrences("[app]\n", with: "[app]\nuser = \"root\"\n"))
            let nobody = ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", TestPaths.buildDirectory + "/baton"]
            for verb in [["check-config"], ["serve", "--config"]] {
                let result = try TestProcess.run(nobody + verb + [asRoot], timeout: .seconds(20))
                #expect(result.code == 2, "\(verb): exit \(result.code): \(result.stderr)")
                #expect(result.stderr.contains("app.user: baton (uid 65534) lacks CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_CHOWN"), "\(result.stderr)")
            }
            // CAP_SETUID and CAP_SETGID alone are not enough (a re-audit: workers could not
            // notify, and baton hung at stop unable to kill them).
            let halfCapable = [
                "/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=+setuid,+setgid",
                "--ambient-caps=+setuid,+setgid", TestPaths.buildDirectory + "/baton", "check-config", asRoot,
            ]
            let half = try TestProcess.run(halfCapable, timeout: .seconds(20))
            #expect(half.code == 2 && half.stderr.contains("lacks CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_CHOWN"), "exit \(half.code): \(half.stderr)")
            // A group alone needs the switch too (a re-audit: passed, then every start failed).
            let group = directory + "/group.toml"
            TestPaths.write(group, text.replacingOccurrences("[app]\n", with: "[app]\ngroup = \"root\"\n"))
            let grouped = try TestProcess.run(nobody + ["check-config", group], timeout: .seconds(20))
            #expect(grouped.code == 2 && grouped.stderr.contains("app.group: baton (uid 65534) lacks"), "\(grouped.stderr)")
            // Its own user is fine, and serves: no switch is made (a re-audit: setgroups failed).
            let own = directory + "/own.toml"
            TestPaths.write(own, text.replacingOccurrences("[app]\n", with: "[app]\nuser = \"nobody\"\n"))
            let fine = try TestProcess.run(nobody + ["check-config", own], timeout: .seconds(20))
            #expect(fine.code == 0, "\(fine.stderr)")
            let serving = try TestProcess(nobody + ["serve", "--config", own])
            defer { _ = serving.stop() }
            #expect(serving.waitForLine(containing: "all 1 workers ready", timeout: .seconds(20)) != nil, "\(serving.stderrLines.suffix(5))")
        }

        /// Stop 46's audit, left then: a user or group *name* whose passwd or group entry has id
        /// 4294967295 or 65535 passed check-config (numbers were refused), then every start
        /// failed or the socket kept root's group. In a mount namespace of the test's own, over
        /// a passwd and group file of its own.
        @Test("a user or group name whose entry has id 4294967295 or 65535 is refused by check-config, naming the key")
        func namesOfTheIDsThatMeanNone() throws {
            let directory = TestPaths.temporaryDirectory("dir-noneid")
            defer { TestPaths.remove(directory) }
            TestPaths.write(
                directory + "/passwd",
                "root:x:0:0:root:/root:/bin/bash\nghost:x:4294967295:100::/:/bin/false\nshort:x:65535:100::/:/bin/false\nnogroup:x:1000:65535::/:/bin/false\n")
            TestPaths.write(directory + "/group", "root:x:0:\nusers:x:100:\nwide:x:4294967295:\nhalf:x:65535:\n")
            let cases: [(key: String, line: String, says: String)] = [
                ("app.user", "[app]\nuser = \"ghost\"", "user \"ghost\" has uid 4294967295"),
                ("app.user", "[app]\nuser = \"short\"", "user \"short\" has uid 65535"),
                ("app.user", "[app]\nuser = \"nogroup\"", "user \"nogroup\"'s primary group has gid 65535"),
                ("app.group", "[app]\ngroup = \"wide\"", "group \"wide\" has gid 4294967295"),
                ("listen.socket_group", "[listen]\nsocket_group = \"half\"", "group \"half\" has gid 65535"),
            ]
            for (index, item) in cases.enumerated() {
                let path = directory + "/c\(index).toml"
                let base = ProcFS.read(Self.writeConfig(in: directory, controlSocket: directory + "/control.sock")) ?? ""
                // The case's key goes into its table (the base config has [app] and [listen]).
                let table = String(item.line.prefix { $0 != "\n" })
                TestPaths.write(path, base.replacingOccurrences(table + "\n", with: item.line + "\n"))
                let script = "mount --bind \(directory)/passwd /etc/passwd && mount --bind \(directory)/group /etc/group && exec \"$0\" check-config \"$1\""
                let result = try TestProcess.run(
                    ["/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, TestPaths.executable("baton"), path],
                    timeout: .seconds(20))
                #expect(result.code == 2, "\(item.key): exit \(result.code): \(result.stderr)")
                #expect(result.stderr.contains(item.key) && result.stderr.contains(item.says), "\(item.key): \(result.stderr)")
            }
        }

        /// A pid-1 audit: `unshare --pid --fork` without `--mount-proc` left baton reading the
        /// host's /proc: 17 host processes listed as strays (and sent SIGKILL at stop), workers
        /// measured at 0 B.
        @Test("serve in a pid namespace whose /proc is the host's exits 2 naming the cause, starting nothing")
        func procOfAnotherPidNamespace() throws {
            let directory = TestPaths.temporaryDirectory("dir-pidns")
            defer { TestPaths.remove(directory) }
            let path = Self.writeConfig(in: directory, controlSocket: directory + "/run/control.sock")
            let result = try TestProcess.run(
                ["/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--", TestPaths.executable("baton"), "serve", "--config", path], timeout: .seconds(20))
            #expect(result.code == 2, "exit \(result.code): \(result.stderr)")
            #expect(result.stderr.contains("/proc is another pid namespace's (it shows baton as pid "), "\(result.stderr)")
            #expect(result.stderr.contains("baton is pid 1)"), "\(result.stderr)")
            #expect(!result.stderr.contains("worker started"), "\(result.stderr)")
            // The demo too, before its banner (a re-audit: the banner, then the refusal).
            let demo = try TestProcess.run(
                [
                    "/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--", TestPaths.executable("baton"), "demo", "--port", "0", "--directory",
                    directory + "/demo",
                ],
                timeout: .seconds(20))
            #expect(demo.code == 2 && demo.stderr.hasPrefix("baton: /proc is another pid namespace's"), "exit \(demo.code): \(demo.stderr)")
        }

        /// A re-audit (3 of 3): a second baton started within the seconds after `rm -rf` of the
        /// first one's state directory made it again and locked it; the first never noticed
        /// (the directory existed at its check) and both committed into it.
        @Test("a baton whose state directory another baton took after an rm -rf says so and commits nothing")
        func stateDirectoryTakenAfterItsRemoval() throws {
            let directory = TestPaths.temporaryDirectory("dir-took")
            defer { TestPaths.remove(directory) }
            let (serve, second) = try Self.batonAndASecondConfig(in: directory)
            defer { _ = serve.stop() }
            TestPaths.remove(directory + "/state")
            let other = try TestProcess([TestPaths.executable("baton"), "serve", "--config", second])
            defer { _ = other.stop() }
            #expect(other.waitForLine(containing: "all 1 workers ready", timeout: .seconds(20)) != nil, "\(other.stderrLines.suffix(5))")
            #expect(
                serve.waitForLine(containing: "was removed or replaced while baton ran and cannot be made again", timeout: .seconds(20))?
                    .contains("in use by another baton (pid \(other.pid))") == true, "\(serve.stderrLines.suffix(5))")
            let stateBefore = ProcFS.read(directory + "/state/release.json")
            let deploy = try TestProcess.run(
                [TestPaths.executable("baton"), "deploy", "--socket", directory + "/one.sock", "--release", directory], timeout: .seconds(30))
            #expect(deploy.code != 0, "committed into the other baton's directory: \(deploy.stdout)")
            #expect(ProcFS.read(directory + "/state/release.json") == stateBefore)
            #expect(serve.exitCode == nil && other.exitCode == nil)
        }

        @Test("check-config refuses /, system directories and overlapping directories with exit 2 and one line naming the key; serve and reload too")
        func checkConfigRefuses() throws {
            let directory = TestPaths.temporaryDirectory("dir-cfg")
            defer { TestPaths.remove(directory) }
            let path = directory + "/baton.toml"
            let baton = TestPaths.executable("baton")
            func config(_ app: String, _ more: String = "") -> String {
                """
                [app]
                name = "shop"
                command = ["/bin/true"]
                directory = "/srv/shop/current"
                workers = 1
                \(app)
                \(more)
                """
            }
            let cases: [(String, String, String)] = [
                (config(#"state_directory = "/""#), "6: app.state_directory", #""/" is a system directory"#),
                (config(#"runtime_directory = "/usr/local/""#), "6: app.runtime_directory", #""/usr/local" is a system directory"#),
                (config(#"state_directory = "/var/lib/../lib/./""#), "6: app.state_directory", #""/var/lib" is a system directory"#),
                (config("", "[deploy]\n" + #"releases_directory = "/""#), "8: deploy.releases_directory", #""/" is a system directory"#),
                (
                    config(#"state_directory = "/srv/b""# + "\n" + #"runtime_directory = "/srv/b""#), "6: app.state_directory",
                    #""/srv/b" is also app.runtime_directory "/srv/b""#
                ),
                (
                    config(#"state_directory = "/srv/shop/state""#, "[deploy]\n" + #"releases_directory = "/srv/shop""#),
                    "6: app.state_directory", #""/srv/shop/state" is inside deploy.releases_directory "/srv/shop""#
                ),
                (config(#"state_directory = "/srv/shop""#), "6: app.state_directory", #"contains the app's release directory "/srv/shop/current""#),
                (config(#"runtime_directory = "\#(directory)""#), "6: app.runtime_directory", "is the config file's folder"),
            ]
            for (text, location, message) in cases {
                TestPaths.write(path, text)
                let check = try TestProcess.run([baton, "check-config", path])
                #expect(check.code == 2, "\(text)")
                #expect(check.stderr.hasPrefix("baton: \(path):\(location): ") && check.stderr.contains(message), "\(check.stderr)")
                #expect(!check.stderr.contains("\n"), "one line: \(check.stderr)")
            }
            // serve goes through the same validation. Only temp paths here: an old baton
            // given "/" would chmod it (and did, once, on a test machine).
            let shared = directory + "/shared"
            makeDirectory(shared, mode: 0o755)
            TestPaths.write(
                path, config(#"state_directory = "\#(shared)""# + "\n" + #"runtime_directory = "\#(shared)/""#, "[listen]\naddresses = [\"127.0.0.1:0\"]"))
            let serve = try TestProcess.run([baton, "serve", "--config", path], timeout: .seconds(20))
            #expect(serve.code == 2)
            #expect(
                serve.stderr
                    == "baton: \(path):6: app.state_directory: \"\(shared)\" is also app.runtime_directory \"\(shared)\": the state, runtime and releases directories must not overlap",
                "\(serve.stderr)")
            #expect(modeAndOwner(shared)?.mode == 0o755)
            #expect(modeAndOwner(shared + "/notify") == nil, "nothing was created")

            // A reload onto such a config fails and the daemon keeps serving as it was.
            let running = try BatonHarness(workers: 1, tag: "dir-rl")
            defer { running.stop() }
            let pids = try running.status().workers.map(\.pid)
            let text = ProcFS.read(running.configPath) ?? ""
            let overlapping = "state_directory = \"\(running.directory)/run/state\""
            TestPaths.write(running.configPath, text.replacing("state_directory = \"\(running.directory)/state\"", with: overlapping))
            let reload = try running.cli(["reload"])
            #expect(reload.code != 0)
            #expect(
                reload.stderr.contains("app.runtime_directory: \"\(running.directory)/run\" contains app.state_directory \"\(running.directory)/run/state\""),
                "\(reload.stderr)")
            #expect(try running.status().workers.map(\.pid) == pids)
        }

        @Test("retention prunes only folders baton deployed: an unrelated folder and the first release survive keep_releases = 2")
        func pruneOnlyDeployed() throws {
            let baton = try scriptedBaton(workers: 1, tag: "dir-prn", extra: "[deploy]\nkeep_releases = 2\nreleases_directory = \"RELEASES\"")
            defer { baton.stop() }
            let releases = baton.directory + "/releases"
            makeDirectory(releases + "/data", mode: 0o755)
            TestPaths.write(releases + "/data/orders.db", "precious\n")
            writeRunScript(releases + "/r0")  // shipped by hand, never deployed
            for id in ["r2", "r3", "r4", "r5"] {
                writeRunScript(releases + "/" + id)
                let result = try baton.cli(["deploy", "--release", releases + "/" + id])
                #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
            }
            // After r4: r2 goes; after r5: r3 goes. Nothing else ever does.
            #expect(baton.process.waitForLine(containing: "removed release folder \(releases)/r3", timeout: .seconds(20)) != nil)
            let removed = baton.process.stderrLines.filter { $0.contains("removed release folder") }
            #expect(removed.count == 2 && removed.allSatisfy { $0.contains("\(releases)/r2 ") || $0.contains("\(releases)/r3 ") }, "\(removed)")
            #expect(try ReleaseFolders.scan(releases).map(\.name).sorted() == ["data", "r0", "r1", "r4", "r5"])
            #expect(ProcFS.read(releases + "/data/orders.db") == "precious\n")
            let prune = try baton.cli(["releases", "--prune"])
            #expect(prune.stdout.contains("removed 0 release folders"), "\(prune.stdout)")
            let report = try JSONDecoder().decode(ReleasesReport.self, from: Data(try baton.cli(["releases", "--json"]).stdout.utf8))
            #expect(
                Set(report.releases.map { "\($0.name):\($0.mark.rawValue)" })
                    == ["r5:current", "r4:previous", "r0:not-deployed", "r1:app-dir", "data:not-deployed"], "\(report.releases)")
            // The record: what baton deployed and has not pruned.
            let recorded = ProcFS.read(baton.directory + "/state/deployed.json") ?? ""
            #expect(recorded.contains("\(releases)/r4") && recorded.contains("\(releases)/r5") && !recorded.contains("\(releases)/r2"), "\(recorded)")
        }
    }
}
