import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// A docs audit: a reload (SIGHUP, `systemctl reload`, `baton reload`) had no canary: under
/// surge it drained two of three old workers 50 ms in, before its first new worker had passed
/// its stability window, so a re-read config that breaks the app took every slot before
/// anything failed. A reload starts workers on a changed config as a deploy does on a changed
/// release: `[deploy] canary` gates it too.
@Suite struct SupervisorReloadCanaryTests {
    /// Three workers surged at once; the reload re-reads a config with one more variable.
    private func reloading() throws -> (DaemonHarness, [pid_t]) {
        let h = try DaemonHarness(workers: 3) { $0.deploy.maxSurge = 3 }
        try h.start()
        h.nextReloadReads { config in
            config.app.environment.append(EnvVar(name: "FEATURE", value: "on"))
        }
        return (h, h.servingPIDs.compactMap { $0 })
    }

    @Test func noOtherSlotIsDrainedBeforeTheCanaryPassed() throws {
        let (h, old) = try reloading()
        let client = h.reload()
        h.advance(by: .seconds(1))
        #expect(client.progress.first?.hasSuffix(", canary slot 0") == true, "\(client.progress)")
        for pid in old.dropFirst() {
            #expect(h.host.child(pid)?.signals.isEmpty == true, "pid \(pid) drained before the canary passed: \(client.progress)")
        }
        h.finishOperations()
        #expect(client.reply?.ok == true, "\(String(describing: client.reply))")
        #expect(Set(h.servingPIDs.compactMap { $0 }).isDisjoint(with: old))
        #expect(h.allReady)
    }

    @Test func aCanaryThatDiesInItsWindowLeavesTheOtherSlotsAlone() throws {
        let (h, old) = try reloading()
        let client = h.reload()
        h.advance(by: .seconds(1))
        let canary = try #require(h.supervisor.slots[0].current)
        #expect(!old.contains(canary.pid) && canary.state == .ready)
        h.host.child(canary.pid)?.end(.exited(1))
        h.finishOperations()
        #expect(client.reply?.ok == false, "\(String(describing: client.reply))")
        #expect(Array(h.servingPIDs.dropFirst()) == Array(old.dropFirst()))
        for pid in old.dropFirst() { #expect(h.host.child(pid)?.signals.isEmpty == true) }
        #expect(h.allReady)
    }

    /// The README's canary is the slot whose worker grew most: a reload took slot 0 whatever
    /// had grown (a headline audit saw slot 0 chosen while slot 3 had grown most).
    @Test func theCanaryIsTheSlotThatGrewMost() throws {
        let h = try DaemonHarness(workers: 3) { $0.deploy.maxSurge = 3 }
        h.host.fakeMemory.worker = MemorySample(rss: 60 << 20, pss: 40 << 20, uss: 30 << 20, shared: 10 << 20)
        try h.start()
        let grown = try #require(h.supervisor.slots[2].current)
        let fresh = try #require(grown.ussAtReady)
        h.host.fakeMemory.setTree(MemorySample(rss: 2 * fresh + (64 << 20), pss: fresh + (32 << 20), uss: fresh + (32 << 20)), of: grown.pid)
        h.nextReloadReads { config in
            config.app.environment.append(EnvVar(name: "FEATURE", value: "on"))
        }
        let client = h.reload()
        h.finishOperations()
        #expect(client.progress.first?.hasSuffix(", canary slot 2") == true, "\(client.progress)")
        #expect(client.reply?.ok == true)
    }

    /// A flaky test (1 of 1143, a fresh-clone CI run): of two idle workers, the one a few
    /// hundred KiB larger since ready was the canary, where the test wanted slot 0. Growth under
    /// 1 MiB and 5 % is none, as the memory rules count it: the canary is slot 0.
    @Test func aFewPagesMoreDoNotPickTheCanary() throws {
        let h = try DaemonHarness(workers: 3) { $0.deploy.maxSurge = 3 }
        h.host.fakeMemory.worker = MemorySample(rss: 60 << 20, pss: 40 << 20, uss: 30 << 20, shared: 10 << 20)
        try h.start()
        let noisy = try #require(h.supervisor.slots[1].current)
        let fresh = try #require(noisy.ussAtReady)
        h.host.fakeMemory.setTree(MemorySample(rss: (60 << 20) + (300 << 10), pss: (40 << 20) + (300 << 10), uss: fresh + (300 << 10)), of: noisy.pid)
        let client = h.deploy(h.makeRelease("r2"))
        h.finishOperations()
        #expect(client.progress.first?.hasSuffix(", canary slot 0") == true, "\(client.progress)")
        #expect(client.reply?.ok == true)
    }
}
