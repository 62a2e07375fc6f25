import BatonCore
import BatonSystem
import Glibc
import Logging

/// The upgrade coordinator: whether a `baton upgrade` is under way, and its first half, the check
/// of the new binary. The file is opened once (`UpgradeBinary`: who may have written it), run as
/// a check child (`upgrade --check`) that must answer the versioned handshake with the nonce it
/// was given (`UpgradeHandshake`) and exit 0 within the check's time limit; only then does the
/// supervisor get the opened file to re-execute. Any other answer, exit or a timeout (the child is
/// SIGKILLed) refuses the upgrade with one line, and nothing else changes.
///
/// It is the only owner of that state; the supervisor asks ``inProgress`` (the restart policy,
/// roll-ahead and recycling hold off meanwhile) and ``checkPID`` (SIGCHLD leaves that child to the
/// pidfd handler here, which needs its exit status). Runs on the loop's thread.
final class UpgradeCoordinator {
    /// A `baton upgrade` asked while a policy restart ran: it runs once that one ended, and no
    /// recycle starts meanwhile (a policy audit: under max_requests recycling 11 of 11 upgrades
    /// were refused).
    final class WaitingUpgrade {
        let binary: String?
        let timeout: Duration
        let waiter: ControlConnection
        let deadline: Duration

        init(binary: String?, timeout: Duration, waiter: ControlConnection, deadline: Duration) {
            self.binary = binary
            self.timeout = timeout
            self.waiter = waiter
            self.deadline = deadline
        }
    }

    /// How long the new binary's check may take unless `baton upgrade --timeout` says otherwise.
    static let checkTimeout: Duration = .seconds(30)

    /// Set from the start of the check until the upgrade is refused, or the execve failed.
    private(set) var inProgress = false
    /// A `baton upgrade` waiting for the policy restart in progress to end (the supervisor's).
    var waiting: WaitingUpgrade?
    /// The `upgrade --check` child while it runs.
    private(set) var checkPID: pid_t?
    /// The read end of the check's handshake pipe while it runs, owned: closed once, when the
    /// answer was read (or the check could not be watched).
    private var handshake: OwnedDescriptor?
    private let loop: EventLoop
    private let host: any SupervisorHost
    private let logger: Logger

    /// A coordinator spawning and signalling through `host`, timing on `loop`.
    init(loop: EventLoop, host: any SupervisorHost, logger: Logger) {
        self.loop = loop
        self.host = host
        self.logger = logger
    }

    /// Opens `path` and runs its check (`configPath` and `environment` are the ones the new
    /// image gets). `waiter` gets the progress lines, and the refusal if there is one (code 2:
    /// the file is not one baton may run; 1: anything else); `passed` gets the opened file once
    /// the check answered correctly, on the loop, with ``inProgress`` cleared (the supervisor
    /// re-checks that the upgrade can still happen, then calls ``reexecuting()``).
    func check(
        path: String, owner: uid_t, configPath: String?, environment: [String], timeout: Duration, waiter: any OperationWaiter,
        passed: @escaping (UpgradeBinary) -> Void
    ) {
        let candidate: UpgradeBinary
        do {
            candidate = try UpgradeBinary.open(path, owner: owner)
        } catch {
            logger.error("upgrade refused: \(error)")
            waiter.finish(.failure("upgrade refused: \(error); nothing changed", code: 2))
            return
        }
        inProgress = true
        waiter.send(.progress("checking \(path): upgrade --check, handshake protocol \(UpgradeHandshake.version)"))
        logger.info("upgrade: checking the new binary", metadata: ["binary": .string(path)])
        let nonce = UpgradeHandshake.makeNonce()
        // The write end is the child's (fd 3): this copy is closed once the spawn is done.
        var childEnd: OwnedDescriptor? = nil
        let check: ChildProcess
        do {
            let pipe = try CBatonLinuxShim.outputPipe()
            handshake = consume pipe.read
            childEnd = consume pipe.write
        } catch {
            candidate.close()
            inProgress = false
            waiter.finish(.failure("upgrade refused: \(error); nothing changed", code: 1))
            return
        }
        // The child gets the handshake pipe as fd 3 and the checked file as fd 4, and runs
        // that very file through /proc/self/fd/4 (a script's interpreter finds it there too).
        var argv = ["/proc/self/fd/4", "upgrade", "--check", "--handshake-fd", "3", "--nonce", nonce]
        if let configPath { argv += ["--config", configPath] }
        let request = SpawnRequest(
            argv: argv, environment: environment, passFDs: [childEnd?.rawValue ?? -1, candidate.fd], stdout: 2, stderr: 2)
        do {
            check = try host.spawn(request)
            childEnd = nil
        } catch {
            childEnd = nil
            handshake = nil
            candidate.close()
            inProgress = false
            waiter.finish(.failure("upgrade refused: the check of \(path) could not start: \(error); nothing changed", code: 1))
            return
        }
        // Reaped by the pidfd handler below: reapStrays (SIGCHLD) must leave it, or the
        // handler would never see its exit status and the upgrade would hang.
        checkPID = check.pid
        // The check leads its own process group (every spawn does): SIGKILL goes to the group,
        // so what it started (a script's `sleep`, holding the handshake pipe) goes with it.
        let timer = loop.schedule(after: timeout) { [host] in
            host.signalGroup(check.pid, SIGKILL)
            host.signal(pidfd: check.pidfd, SIGKILL)
        }
        do {
            try loop.register(fd: check.pidfd, events: .readable) { [unowned self] _ in
                guard self.host.killGroupIfLeaderExited(pid: check.pid, pidfd: check.pidfd) else { return }
                guard let exit = self.host.exitStatus(pidfd: check.pidfd, reap: true) else { return }
                self.checkPID = nil
                self.loop.cancel(timer)
                self.loop.unregister(fd: check.pidfd)
                check.close()
                // The child has exited: what it wrote is in the pipe (a grandchild
                // keeping the write end open cannot make this read wait).
                var answer = [UInt8](repeating: 0, count: UpgradeHandshake.maxAnswerBytes)
                let n = answer.withUnsafeMutableBytes { read(self.handshake?.rawValue ?? -1, $0.baseAddress, $0.count) }
                self.handshake = nil  // closes it
                self.inProgress = false
                let refusal =
                    UpgradeHandshake.refusal(output: Array(answer.prefix(max(n, 0))), nonce: nonce)
                    ?? (exit == .exited(0) ? nil : "the check exited with \(exit) after the handshake")
                if let refusal {
                    candidate.close()
                    let why =
                        exit == .signaled(SIGKILL)
                        ? "no answer within \(Units.formatDuration(timeout)) (\(refusal))" : refusal + (exit == .exited(0) ? "" : ", \(exit)")
                    self.logger.error("upgrade refused: \(path) upgrade --check: \(why); this image keeps running")
                    waiter.finish(.failure("upgrade refused: \(path) upgrade --check: \(why); nothing changed", code: 1))
                    return
                }
                waiter.send(.progress("check passed (upgrade protocol \(UpgradeHandshake.version))"))
                passed(candidate)
            }
        } catch {
            host.signal(pidfd: check.pidfd, SIGKILL)
            handshake = nil
            candidate.close()
            inProgress = false
            checkPID = nil
            waiter.finish(.failure("upgrade refused: \(error)", code: 1))
        }
    }

    /// The supervisor is about to hand its state over and execve.
    func reexecuting() { inProgress = true }

    /// The upgrade ended in this image (the execve, or what comes before it, failed).
    func failed() { inProgress = false }
}
