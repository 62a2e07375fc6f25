import BatonCore
@testable import BatonDaemon
import BatonSystem
import BatonTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// The upgrade coordinator's check of a new binary on the fake port: the check child is a
/// `FakeChild` whose handshake pipe the test writes to; the clock is moved by hand.
@Suite final class UpgradeCoordinatorTests {
    let clock = ManualClock()
    let loop: EventLoop
    let host = FakeHost()
    let upgrade: UpgradeCoordinator
    let root: String
    let binary: String
    /// A dup of the handshake pipe's write end the check child got (the coordinator closes its own).
    let answer = Answer()

    final class Answer {
        var fd: Int32 = -1
        deinit { if fd >= 0 { close(fd) } }
        func write(_ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            fd = -1
        }
    }

    init() throws {
        let clock = self.clock
        loop = try EventLoop(now: { clock.now })
        upgrade = UpgradeCoordinator(loop: loop, host: host, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        var template = Array("/tmp/baton-upgrade-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        binary = root + "/baton"
        #expect(FileManager.default.createFile(atPath: binary, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755]))
        let answer = self.answer
        host.onSpawn = { child in answer.fd = fcntl(child.request.passFDs[0], F_DUPFD_CLOEXEC, 0) }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// Runs the check of `path`; returns the waiter and whether it passed (once the loop settled).
    func check(_ path: String? = nil, timeout: Duration = .seconds(5)) -> (RecordingWaiter, Passed) {
        let waiter = RecordingWaiter()
        let passed = Passed()
        upgrade.check(
            path: path ?? binary, owner: geteuid(), configPath: "/etc/baton/app.toml", environment: ["PATH=/usr/bin"], timeout: timeout,
            waiter: waiter
        ) { candidate in
            passed.binary = candidate
        }
        settle()
        return (waiter, passed)
    }

    final class Passed {
        var binary: UpgradeBinary?
        deinit { binary?.close() }
    }

    func settle() {
        for _ in 0..<1000 {
            guard let ran = loop.pump(), ran > 0 else { return }
        }
    }

    /// The nonce the check child was given.
    func nonce(_ child: FakeChild) -> String {
        let argv = child.request.argv
        return argv[(argv.firstIndex(of: "--nonce") ?? argv.count - 2) + 1]
    }

    @Test func theRightAnswerAndExitZeroHandTheOpenedFileOver() throws {
        let (waiter, passed) = check()
        let child = try #require(host.children.last)
        #expect(child.request.argv.prefix(3) == ["/proc/self/fd/4", "upgrade", "--check"])
        #expect(child.request.argv.suffix(2) == ["--config", "/etc/baton/app.toml"])
        #expect(upgrade.inProgress && upgrade.checkPID == child.pid)
        answer.write(UpgradeHandshake.answer(nonce: nonce(child)))
        child.end(.exited(0))
        settle()
        #expect(passed.binary?.path == binary)
        #expect(waiter.reply == nil, "the supervisor answers after the execve")
        #expect(waiter.progress.count == 2 && waiter.progress[1].hasPrefix("check passed"))
        #expect(!upgrade.inProgress && upgrade.checkPID == nil && child.reaped)
    }

    @Test func aWrongNonceIsRefused() throws {
        let (waiter, passed) = check()
        let child = try #require(host.children.last)
        answer.write(UpgradeHandshake.answer(nonce: "not-the-nonce"))
        child.end(.exited(0))
        settle()
        #expect(passed.binary == nil)
        #expect(waiter.reply?.code == 1)
        #expect(waiter.reply?.error?.hasPrefix("upgrade refused: \(binary) upgrade --check: ") == true)
        #expect(waiter.reply?.error?.hasSuffix("; nothing changed") == true)
        #expect(!upgrade.inProgress && upgrade.checkPID == nil)
    }

    @Test func theRightAnswerThenAFailingExitIsRefused() throws {
        let (waiter, passed) = check()
        let child = try #require(host.children.last)
        answer.write(UpgradeHandshake.answer(nonce: nonce(child)))
        child.end(.exited(3))
        settle()
        #expect(passed.binary == nil)
        #expect(waiter.reply?.error?.contains("the check exited with") == true)
        #expect(!upgrade.inProgress)
    }

    @Test func noAnswerWithinTheTimeoutKillsTheCheck() throws {
        let (waiter, passed) = check(timeout: .seconds(5))
        let child = try #require(host.children.last)
        clock.set(clock.now + .seconds(4))
        settle()
        #expect(child.isRunning && waiter.reply == nil)
        clock.set(clock.now + .seconds(1))
        settle()
        #expect(child.signals.first == SIGKILL && child.reaped)
        // Its whole group: a script's `sleep` stayed behind, holding the handshake pipe
        // (found by an operator audit, 2/2).
        #expect(host.groupSignals.contains { $0.0 == child.pid && $0.1 == SIGKILL }, "\(host.groupSignals)")
        #expect(passed.binary == nil)
        #expect(waiter.reply?.error?.contains("no answer within 5s") == true, "\(String(describing: waiter.reply))")
        #expect(!upgrade.inProgress && upgrade.checkPID == nil)
    }

    @Test func aFileOthersMayWriteIsRefusedWithoutACheck() throws {
        chmod(binary, 0o777)
        let (waiter, passed) = check()
        #expect(host.children.isEmpty && passed.binary == nil)
        #expect(waiter.reply?.code == 2)
        #expect(waiter.reply?.error?.contains("writable by group or others") == true)
        #expect(!upgrade.inProgress)
    }

    /// A FIFO at the path: opening it for reading blocked the event loop until a writer came
    /// (the daemon stopped answering anything). Now it is refused at once as not a regular file.
    /// If the open blocks, a writer releases it after 10 s and the test fails.
    @Test func aFIFOIsRefusedWithoutBlockingTheLoop() throws {
        let fifo = FIFOProbe.make(in: root)
        var result: (RecordingWaiter, Passed)?
        let blocked = FIFOProbe.blocks(on: fifo) { result = check(fifo) }
        let (waiter, passed) = try #require(result)
        #expect(!blocked, "opening the FIFO blocked until a writer came")
        #expect(host.children.isEmpty && passed.binary == nil)
        #expect(waiter.reply?.code == 2)
        #expect(waiter.reply?.error?.contains("is not a regular file") == true, "\(String(describing: waiter.reply))")
        #expect(!upgrade.inProgress)
    }

    @Test func aCheckThatCannotStartIsRefused() {
        host.spawnError = SpawnError(step: "execve", errno: ENOENT)
        let (waiter, passed) = check()
        #expect(passed.binary == nil)
        #expect(waiter.reply?.code == 1 && waiter.reply?.error?.contains("could not start") == true)
        #expect(!upgrade.inProgress && upgrade.checkPID == nil)
    }

    /// The handshake pipe and the opened file are owned: once the check ended, none of the
    /// pipe's descriptors is left (the write end went after the spawn, the read end once the
    /// answer was read), and the file goes with the last owner.
    @Test func theCheckLeavesNoDescriptorOfItsPipe() throws {
        let (_, passed) = check()
        let child = try #require(host.children.last)
        let probe = fcntl(answer.fd, F_DUPFD_CLOEXEC, 0)
        defer { close(probe) }
        #expect(descriptors(onThePipeOf: probe) == 3, "the coordinator's read end, the test's dup and this probe")
        answer.write(UpgradeHandshake.answer(nonce: nonce(child)))
        child.end(.exited(0))
        settle()
        let file = try #require(passed.binary)
        #expect(descriptors(onThePipeOf: probe) == 1, "only this probe")
        let fd = file.fd
        #expect(fcntl(fd, F_GETFD) != -1)
        file.close()
        #expect(file.fd == -1)
        file.close()  // a second close does nothing
        #expect(file.fd == -1)
    }

    @Test func reexecutingAndFailedMarkTheUpgrade() {
        upgrade.reexecuting()
        #expect(upgrade.inProgress)
        upgrade.failed()
        #expect(!upgrade.inProgress)
    }
}
