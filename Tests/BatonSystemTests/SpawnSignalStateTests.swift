import BatonCore
import BatonSystem
import BatonTestSupport
import BatonTestTraits
import Glibc
import Testing

private func bit(_ signal: Int32) -> UInt64 { 1 << UInt64(signal - 1) }

/// What a thread of Dispatch or of the Swift pool typically blocks.
private let blockedByCaller: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGCHLD]

/// docs/ARCHITECTURE.md, *Process model*: the child resets its signal state. The
/// spawning thread blocks signals (and the process ignores SIGPIPE); the
/// child must start with an empty mask and default dispositions.
/// Signals 1...31 (32 and 33 are glibc's own).
private let standardSignals: UInt64 = 0x7FFF_FFFF

/// What a `sleep 30` spawned from a blocking thread showed of its signal state.
private struct SpawnedSleep: Sendable {
    /// Its /proc/PID/status.
    var status: String
    /// Its blocked mask, as ProcFS reads it.
    var blocked: UInt64?
}

/// Spawns `sleep 30` from a fresh thread that blocked `blockedByCaller`, while this process
/// ignores SIGPIPE; reads the child's signal state and ends it on that thread (the child, which
/// owns its pidfd, does not leave it). Returns what it read and this process's ignored mask.
private func spawnSleepFromABlockingThread() throws -> (spawned: SpawnedSleep, parentIgnored: UInt64) {
    // Ignoring SIGPIPE is harmless to the runner (writes get EPIPE instead); restored after.
    let previous = signal(SIGPIPE, SIG_IGN)
    defer { signal(SIGPIPE, previous) }
    let ownStatus = try #require(ProcFS.read("/proc/self/status"))
    let parentIgnored = ProcParsers.statusMask(ownStatus, field: "SigIgn") ?? 0
    #expect(parentIgnored & bit(SIGPIPE) != 0)
    let (result, callerMask) = onDedicatedThread { () -> (Result<SpawnedSleep, any Error>, UInt64) in
        CBatonLinuxShim.blockSignals(blockedByCaller)
        let mask = CBatonLinuxShim.blockedMask()
        let request = SpawnRequest(argv: ["/bin/sleep", "30"], environment: childEnvironment)
        return (
            Result { () throws -> SpawnedSleep in
                let child = try LinuxProcessLauncher().spawn(request)
                defer { finish(child) }
                // spawn returns once the error pipe closed, which the kernel does inside execve
                // before it renames the task and resets its handlers (do_close_on_exec comes
                // before __set_task_comm in begin_new_exec): wait, bounded, for sleep itself,
                // asleep in its nanosleep.
                let deadline = monotonicNow() + .seconds(10)
                var status = ProcFS.read("/proc/\(child.pid)/status")
                while let current = status, !(current.contains("Name:\tsleep") && current.contains("State:\tS")),
                    monotonicNow() < deadline
                {
                    pause(.milliseconds(5))
                    status = ProcFS.read("/proc/\(child.pid)/status")
                }
                guard let status else { throw SystemError("read /proc/\(child.pid)/status", errno: ENOENT) }
                return SpawnedSleep(status: status, blocked: ProcFS.blockedSignals(of: child.pid))
            }, mask
        )
    }
    for sig in blockedByCaller { #expect(callerMask & bit(sig) != 0, "the spawning thread did not block \(sig)") }
    return (try result.get(), parentIgnored)
}

@Suite("Spawn resets the signal state", .serialized, .ownThread)
struct SpawnSignalStateTests {
    @Test func childHasEmptyMaskAndDefaultDispositions() throws {
        let spawned = try spawnSleepFromABlockingThread().spawned
        #expect(spawned.status.contains("Name:\tsleep"))
        #expect(ProcParsers.statusMask(spawned.status, field: "SigBlk") == 0)
        // Signals 1...31 (SIGPIPE included, which this process ignores) are back to default.
        #expect((ProcParsers.statusMask(spawned.status, field: "SigIgn") ?? 1) & standardSignals == 0)
        #expect(ProcParsers.statusMask(spawned.status, field: "SigCgt") == 0)
        #expect(spawned.blocked == 0)
    }

    /// `swift test` starts the test runner with signal 32 (glibc's SIGCANCEL)
    /// ignored; glibc's sigaction() refuses 32 and 33 with EINVAL, so the
    /// reset loop in spawn.c leaves that SIG_IGN in place and workers inherit
    /// it through execve. Passes when the runner is started without it.
    @Test
    func childHasNoIgnoredSignalAtAll() throws {
        let (spawned, parentIgnored) = try spawnSleepFromABlockingThread()
        let ignored = ProcParsers.statusMask(spawned.status, field: "SigIgn")
        #expect(
            ignored == 0,
            "child SigIgn \(String(ignored ?? 0, radix: 16)), parent SigIgn \(String(parentIgnored, radix: 16))")
    }

    @Test func grandchildOfAShellAlsoStartsClean() throws {
        let process = onDedicatedThread { () -> TestProcess? in
            CBatonLinuxShim.blockSignals(blockedByCaller)
            return try? TestProcess(
                ["/bin/sh", "-c", #"grep -E "^(SigBlk|SigIgn):" /proc/self/status"#], environment: childEnvironment)
        }
        let p = try #require(process)
        #expect(p.wait(timeout: .seconds(20)) == 0)
        #expect(p.stdout.hasPrefix("SigBlk:\t0000000000000000\nSigIgn:\t"), "\(p.stdout)")
        #expect(ProcParsers.statusMask(p.stdout, field: "SigBlk") == 0)
        #expect((ProcParsers.statusMask(p.stdout, field: "SigIgn") ?? 1) & standardSignals == 0)
    }

    @Test func callerThreadMaskIsUntouched() {
        let (before, after) = onDedicatedThread { () -> (UInt64, UInt64) in
            CBatonLinuxShim.blockSignals(blockedByCaller)
            let before = CBatonLinuxShim.blockedMask()
            if let child = try? LinuxProcessLauncher().spawn(SpawnRequest(argv: ["/bin/true"], environment: childEnvironment)) {
                finish(child)
            }
            return (before, CBatonLinuxShim.blockedMask())
        }
        #expect(before == after)
        #expect(before & bit(SIGTERM) != 0)
    }

    /// The measured trap: a python3 worker spawned from a thread that blocks
    /// SIGTERM used to ignore `stop.signal`. Spawned by baton it dies from it.
    @Test func python3FromABlockingThreadDiesFromSIGTERM() throws {
        let process = onDedicatedThread { () -> TestProcess? in
            CBatonLinuxShim.blockSignals(blockedByCaller)
            let script = "import sys, time\nsys.stderr.write('ready\\n')\nsys.stderr.flush()\ntime.sleep(60)\n"
            return try? TestProcess([python3, "-c", script], environment: childEnvironment)
        }
        let p = try #require(process)
        defer { p.stop(timeout: .seconds(5)) }
        try #require(p.waitForLine(containing: "ready", timeout: .seconds(30)) != nil, "python3 did not start: \(p.stderrLines)")
        #expect(ProcFS.blockedSignals(of: p.pid) == 0)
        p.signal(SIGTERM)
        #expect(p.wait(timeout: .seconds(10)) == 128 + SIGTERM, "python3 survived SIGTERM")
    }
}
