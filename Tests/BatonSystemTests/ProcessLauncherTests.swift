import BatonCore
import BatonSystem
import BatonTestSupport
import BatonTestTraits
import CBatonLinux
import Glibc
import Testing

/// Lists the child's open descriptors as "N TARGET" lines, leaving out the
/// one os.listdir opens on /proc/self/fd itself.
private let listFDs = """
    import os
    me = os.getpid()
    for n in sorted(os.listdir('/proc/self/fd'), key=int):
        try:
            t = os.readlink('/proc/self/fd/' + n)
        except OSError:
            continue
        if t != '/proc/%d/fd' % me:
            print(n, t)
    """

@Suite("LinuxProcessLauncher", .serialized, .ownThread)
struct ProcessLauncherTests {
    @Test func listenPIDIsTheChildsOwnPID() throws {
        let env = childEnvironment + ["LISTEN_PID=1", "LISTEN_FDS=1"]
        let p = try TestProcess(["/bin/sh", "-c", #"echo "$LISTEN_PID $$ $LISTEN_FDS""#], environment: env, setListenPID: true)
        #expect(p.wait(timeout: .seconds(20)) == 0)
        #expect(p.stdout == "\(p.pid) \(p.pid) 1\n")
    }

    /// An audit of resource exhaustion: baton kept the soft RLIMIT_NOFILE it was started with.
    /// `baton serve` now raises its own to the hard limit (`DescriptorLimit.raise`), and each
    /// child gets a soft limit of baton's choosing (the one baton was started with), set just
    /// before execve.
    @Test func theChildGetsTheDescriptorSoftLimitAsked() throws {
        var request = SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment)
        request.descriptorSoftLimit = 777
        let child = try LinuxProcessLauncher().spawn(request)
        defer { finish(child) }
        let limits = try #require(ProcFS.read("/proc/\(child.pid)/limits"))
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        #expect(fields.count >= 5 && fields[3] == "777", "\(line)")
        #expect(DescriptorLimit.original == nil, "the test process never raised its own")
    }

    /// A limits re-audit: a reload under a low `LimitNOFILE=` failed with "cannot run the config
    /// parser: placing descriptors: Too many open files" and no word of the limit.
    @Test func anEMFILESaysWhatToRaiseAndNothingElseDoes() {
        let hint = DescriptorLimit.hint(SpawnError(step: "placing descriptors", errno: EMFILE))
        #expect(hint.hasPrefix(" (baton's open descriptors reached its limit of \(DescriptorLimit.soft); it holds about 3 per worker"), "\(hint)")
        #expect(hint.hasSuffix(": raise LimitNOFILE= or ulimit -n)"))
        #expect(DescriptorLimit.hint(SystemError("pipe2", errno: EMFILE)) == hint)
        #expect(DescriptorLimit.hint(SpawnError(step: "exec", errno: ENOENT)).isEmpty)
        // A hardening audit: under `TasksMax=20` a deploy failed on "clone: Resource temporarily
        // unavailable", no limit named.
        for step in ["clone", "fork"] {
            #expect(DescriptorLimit.hint(SpawnError(step: step, errno: EAGAIN)).contains("the unit's TasksMax= (the cgroup's pids.max), ulimit -u"))
        }
        #expect(DescriptorLimit.hint(SpawnError(step: "exec /bin/x", errno: EAGAIN)).isEmpty)
    }

    @Test func noListenPIDUnlessAsked() throws {
        let p = try TestProcess(
            ["/bin/sh", "-c", #"echo "[${LISTEN_PID-unset}]""#], environment: childEnvironment + ["LISTEN_PID=77"])
        #expect(p.wait(timeout: .seconds(20)) == 0)
        #expect(p.stdout == "[unset]\n")
    }

    @Test func environmentIsExactlyTheRequestedOne() throws {
        let p = try TestProcess(["/usr/bin/env"], environment: ["PATH=/usr/bin:/bin", "A=1", "B=x=y"])
        #expect(p.wait(timeout: .seconds(20)) == 0)
        #expect(p.stdout == "PATH=/usr/bin:/bin\nA=1\nB=x=y\n")
    }

    @Test func passedDescriptorsInOrderAndNothingElse() throws {
        try withTemporaryDirectory("fds") { dir in
            let a = try makePipe()
            let b = try makePipe()
            let listener = try Sockets.bind(.tcp(host: "127.0.0.1", port: 0), mode: 0o600, backlog: 8)
            // A descriptor without close-on-exec: the spawn path must close it anyway.
            let leak = open(dir + "/leaked-fd", O_RDWR | O_CREAT, 0o600)
            try #require(leak >= 0)
            defer {
                for fd in [a.read, a.write, b.read, b.write, leak] { close(fd) }
                withExtendedLifetime(listener) {}  // the Listener owns its socket and closes it
            }
            let passed = [b.write, listener.fd, a.read]
            let p = try TestProcess([python3, "-c", listFDs], environment: childEnvironment, passFDs: passed)
            #expect(p.wait(timeout: .seconds(20)) == 0, "\(p.stderrLines)")
            let lines = p.stdout.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1).map(String.init) }
            #expect(lines.map { $0[0] } == ["0", "1", "2", "3", "4", "5"], "\(p.stdout)")
            let targets = Dictionary(uniqueKeysWithValues: lines.map { ($0[0], $0.count > 1 ? $0[1] : "") })
            #expect(targets["0"] == "/dev/null")
            #expect(targets["3"] == fdTarget(b.write))
            #expect(targets["4"] == fdTarget(listener.fd))
            #expect(targets["5"] == fdTarget(a.read))
            #expect(targets["4"]?.hasPrefix("socket:") == true)
            #expect(!targets.values.contains { $0.hasSuffix("leaked-fd") })
        }
    }

    @Test func theSameDescriptorTwiceAndStdioOnly() throws {
        let a = try makePipe()
        defer {
            close(a.read)
            close(a.write)
        }
        let twice = try TestProcess([python3, "-c", listFDs], environment: childEnvironment, passFDs: [a.write, a.write])
        #expect(twice.wait(timeout: .seconds(20)) == 0)
        let target = fdTarget(a.write)
        #expect(twice.stdout.hasSuffix("3 \(target)\n4 \(target)\n"), "\(twice.stdout)")
        let none = try TestProcess([python3, "-c", listFDs], environment: childEnvironment)
        #expect(none.wait(timeout: .seconds(20)) == 0)
        #expect(none.stdout.split(separator: "\n").map { $0.prefix { $0 != " " } } == ["0", "1", "2"])
    }

    /// Its own process group (stop signals go to the tree), in the spawner's session: the
    /// kernel schedules every session as a group of its own (autogroup), and a session per
    /// worker cost the serving workers tens of milliseconds of wakeup latency.
    @Test func childLeadsItsGroupInTheSpawnersSession() throws {
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment))
        defer { finish(child) }
        #expect(getpgid(child.pid) == child.pid)
        #expect(getpgid(child.pid) != getpgid(0))
        #expect(getsid(child.pid) == getsid(0))
        var request = SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment)
        request.ownSession = true
        let leader = try LinuxProcessLauncher().spawn(request)
        defer { finish(leader) }
        #expect(getsid(leader.pid) == leader.pid && getpgid(leader.pid) == leader.pid)
        let stat = try #require(ProcFS.read("/proc/\(child.pid)/stat").flatMap(ProcParsers.statFields))
        #expect(stat.pgrp == child.pid)
        #expect(stat.ppid == getpid())
        #expect(fcntl(child.pidfd, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func directoryIsApplied() throws {
        try withTemporaryDirectory("cwd") { dir in
            let p = try TestProcess(["/bin/sh", "-c", "pwd -P"], environment: childEnvironment, directory: dir)
            #expect(p.wait(timeout: .seconds(20)) == 0)
            let real = try #require(realpath(dir, nil))
            defer { free(real) }
            #expect(p.stdout == String(cString: real) + "\n")
        }
    }

    @Test func lookupUsesTheRequestsPATH() throws {
        try withTemporaryDirectory("path") { dir in
            _ = mkdir(dir + "/one", 0o755)
            _ = mkdir(dir + "/two", 0o755)
            // The first match is not executable: execvp would skip it, so does baton.
            TestPaths.write(dir + "/one/baton-tool", "#!/bin/sh\necho one\n", mode: 0o644)
            TestPaths.write(dir + "/two/baton-tool", "#!/bin/sh\necho two \"$@\"\n", mode: 0o755)
            let env = ["PATH=\(dir)/missing:\(dir)/one:\(dir)/two"]
            let p = try TestProcess(["baton-tool", "arg"], environment: env)
            #expect(p.wait(timeout: .seconds(20)) == 0)
            #expect(p.stdout == "two arg\n")
            #expect(try LinuxProcessLauncher.resolve("baton-tool", directory: nil, environment: env) == dir + "/two/baton-tool")
            // The last PATH entry wins, as getenv would see it.
            let twice = ["PATH=/nonexistent", "PATH=\(dir)/two"]
            #expect(try LinuxProcessLauncher.resolve("baton-tool", directory: nil, environment: twice) == dir + "/two/baton-tool")
            // Relative PATH entries and relative argv[0] are taken from the child's directory.
            #expect(
                try LinuxProcessLauncher.resolve("baton-tool", directory: dir, environment: ["PATH=two"]) == dir
                    + "/two/baton-tool")
            let relative = try TestProcess(["two/baton-tool", "rel"], environment: ["PATH=/nonexistent"], directory: dir)
            #expect(relative.wait(timeout: .seconds(20)) == 0)
            #expect(relative.stdout == "two rel\n")
        }
    }

    @Test func commandNotFound() {
        #expect {
            _ = try TestProcess(["baton-no-such-command"], environment: ["PATH=/nonexistent:/usr/bin:/bin"])
        } throws: { error in
            let e = error as? SpawnError
            return e?.errno == 0 && e?.step.contains("command not found") == true
                && e?.description == "command not found in PATH: baton-no-such-command"
        }
        #expect(throws: SpawnError(step: "empty command", errno: 0)) {
            _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [], environment: []))
        }
        #expect(throws: SpawnError(step: "empty command", errno: 0)) {
            _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [""], environment: []))
        }
    }

    @Test func missingDirectory() throws {
        try withTemporaryDirectory("nodir") { dir in
            let missing = dir + "/gone"
            let request = SpawnRequest(argv: ["/bin/true"], environment: childEnvironment, directory: missing)
            #expect(throws: SpawnError(step: "chdir \(missing)", errno: ENOENT)) {
                _ = try LinuxProcessLauncher().spawn(request)
            }
            do throws(SpawnError) {
                _ = try LinuxProcessLauncher().spawn(request)
            } catch {
                #expect(error.description == "chdir \(missing): No such file or directory")
            }
        }
    }

    @Test func notExecutableAndMissingExecutable() throws {
        try withTemporaryDirectory("noexec") { dir in
            let script = dir + "/app"
            TestPaths.write(script, "#!/bin/sh\necho hi\n", mode: 0o644)
            #expect(throws: SpawnError(step: "exec \(script)", errno: EACCES)) {
                _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [script], environment: childEnvironment))
            }
            #expect(throws: SpawnError(step: "exec \(dir)/missing", errno: ENOENT)) {
                _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [dir + "/missing"], environment: childEnvironment))
            }
            #expect(throws: SpawnError(step: "exec \(dir)", errno: EACCES)) {
                _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [dir], environment: childEnvironment))
            }
            // A starved audit: a script whose #! interpreter is missing read as the script missing
            // (`exec …/start.sh: No such file or directory`).
            let interpreted = dir + "/start.sh"
            TestPaths.write(interpreted, "#!/usr/bin/python9 -u\nprint(1)\n", mode: 0o755)
            let error = #expect(throws: SpawnError.self) {
                _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [interpreted], environment: childEnvironment))
            }
            #expect(error?.description == "exec \(interpreted): its #! interpreter /usr/bin/python9: No such file or directory")
            // Printable (a re-audit: CRLF line ends, and an escape in the line, reached terminals).
            TestPaths.write(interpreted, "#!/bin/sh\r\necho\r\n", mode: 0o755)
            let crlf = #expect(throws: SpawnError.self) {
                _ = try LinuxProcessLauncher().spawn(SpawnRequest(argv: [interpreted], environment: childEnvironment))
            }
            #expect(crlf?.description == "exec \(interpreted): its #! interpreter /bin/sh?: No such file or directory")
        }
    }

    @Test func pidfdReportsExitCodeAndKeepsTheZombieUntilReaped() throws {
        let gate = try makeBlockingPipe()
        defer { close(gate.read) }
        let child = try LinuxProcessLauncher().spawn(
            SpawnRequest(argv: ["/bin/sh", "-c", "read line <&3; exit 3"], environment: childEnvironment, passFDs: [gate.read]))
        defer { finish(child) }
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: false) == nil)
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true) == nil)
        writeAll(gate.write, Array("go\n".utf8))
        close(gate.write)
        try #require(waitForExit(pidfd: child.pidfd, timeout: .seconds(20)))
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: false) == .exited(3))
        // Not reaped: still a zombie, and asking again gives the same answer.
        #expect(ProcFS.read("/proc/\(child.pid)/stat").flatMap(ProcParsers.statFields)?.state == "Z")
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: false) == .exited(3))
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true) == .exited(3))
        #expect(ProcFS.read("/proc/\(child.pid)/stat").flatMap(ProcParsers.statFields)?.state != "Z")
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true) == nil)
        #expect(CBatonLinuxShim.Exit.exited(3).description == "exit code 3")
    }

    @Test func pidfdReportsSIGKILL() throws {
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment))
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: false) == nil)
        #expect(CBatonLinuxShim.signal(pidfd: child.pidfd, SIGKILL))
        #expect(waitForExit(pidfd: child.pidfd, timeout: .seconds(20)))
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: false) == .signaled(9))
        let exit = finish(child)
        #expect(exit == .signaled(SIGKILL))
        #expect(exit?.description == "signal 9 (Killed)")
    }

    /// The child shares the spawner's memory until execve (spawn.c): a fork write-protected
    /// every page the spawner had touched, so its next write to each one faulted, and under
    /// vm.overcommit_memory=2 the copy was charged against the commit limit.
    @Test("a spawn leaves the spawner's memory as it was: no copy-on-write fault after it")
    func noCopyOnWriteAfterASpawn() throws {
        let size = 16 << 20
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let memory = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(memory != MAP_FAILED)
        defer { munmap(memory, size) }
        _ = madvise(memory, size, MADV_NOHUGEPAGE)  // a fault per 4 KiB page, not per 2 MiB
        let bytes = memory.assumingMemoryBound(to: UInt8.self)
        func writeEveryPage(_ value: UInt8) {
            for offset in stride(from: 0, to: size, by: page) { bytes[offset] = value }
        }
        writeEveryPage(1)
        // This test's own thread (.ownThread): its faults alone.
        func minorFaults() -> Int {
            var usage = rusage()
            _ = getrusage(__rusage_who_t(1) /* RUSAGE_THREAD */, &usage)
            return usage.ru_minflt
        }
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/true"], environment: childEnvironment))
        #expect(finish(child, signal: 0) == .exited(0))
        let before = minorFaults()
        writeEveryPage(2)
        let faults = minorFaults() - before
        // fork: one per page written (4,096); shared memory: none.
        #expect(faults < 64, "\(faults) faults writing \(size / page) pages after the spawn")
    }

    @Test("a user switch in the child changes the child's ids alone")
    func credentialsAreTheChildsAlone() throws {
        try #require(getuid() == 0, "needs root to switch users")
        let p = try TestProcess(
            ["/bin/sh", "-c", "id -u; id -g; id -G"], environment: childEnvironment,
            credentials: Credentials(uid: 65534, gid: 65534, groups: [65534, 4]))
        #expect(p.wait(timeout: .seconds(20)) == 0)
        #expect(p.stdout == "65534\n65534\n65534 4\n")
        #expect(getuid() == 0 && geteuid() == 0 && getgid() == 0)
        #expect(ProcFS.read("/proc/self/status").map { $0.contains("Uid:\t0\t0\t0\t0") } == true)
    }

    @Test func signalingAReapedProcessFails() throws {
        let child = try LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/true"], environment: childEnvironment))
        #expect(waitForExit(pidfd: child.pidfd, timeout: .seconds(20)))
        #expect(CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true) == .exited(0))
        #expect(!CBatonLinuxShim.signal(pidfd: child.pidfd, SIGTERM))
        child.close()
    }
}
