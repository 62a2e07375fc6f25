import CSystemd
import Glibc

// baton-demo-worker: a small HTTP/1.1 worker for baton's demo, tests and benchmarks.
//
// Threads: main (boot, then waits for the end), one signal thread (sigwait), one accept thread
// (poll on the listening sockets), one thread per connection. No Foundation, no Dispatch: an
// idle worker stays a few MiB, so the memory a test or a benchmark measures is what the flags
// asked for.

/// The whole life of the worker; never returns.
func runWorker() -> Never {
    let options: Options
    do {
        options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
        fail(error.message, status: 2)
    }
    if options.help {
        var usage = Options.usage
        usage.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
        exit(0)
    }

    // Before any thread exists, so that every thread inherits the mask.
    Signals.blockDrainSignals()

    let listeners = Listeners.open(options: options)
    let state = WorkerState()
    let server = Server(options: options, state: state)
    log(
        "started pid=\(processID) release=\(server.release) slot=\(server.slot) "
            + "listen_fds=\(listeners.inherited) listen_pid=\(listeners.listenPID)")
    Signals.startWaiter(state: state)

    boot(options: options, state: state)
    Acceptor(listeners: listeners.fds, server: server).start()
    announceReadiness(options: options, state: state)
    Watchdog.start()

    let crashAt = options.crashAfter.map { monotonicNanos() + nanos(seconds: $0) }
    switch state.waitForEnding(drainTimeout: options.drainTimeout, crashAt: crashAt) {
    case .drained:
        log("drained: exiting")
        exit(0)
    case .drainTimedOut(let open):
        log("drain timed out after \(options.drainTimeout)s with \(open) connection(s) open: exiting")
        // _exit: connection threads are still running, so skip exit-time cleanup.
        _exit(1)
    case .crashTimer:
        log("crash timer: no new connection; each ends after its current answer")
        // Bounded: a client that connected and never sends does not keep the worker alive.
        let busy = state.beginCrash(deadline: monotonicNanos() + nanos(seconds: 2))
        if busy > 0 { log("crash timer: \(busy) request(s) still in flight after 2 s") }
        crash()
    }
}

/// The simulated boot: the baseline footprint, then the delay (cut short by SIGTERM), then the
/// simulated failure.
func boot(options: Options, state: WorkerState) {
    Memory.shared.leak(bytes: options.holdMiB << 20)
    if let path = options.holdShared { Memory.shared.holdShared(path: path) }
    guard state.waitUnlessDraining(until: monotonicNanos() + nanos(seconds: options.bootDelay)) else {
        log("stopped while booting: exiting")
        exit(0)
    }
    if options.failBoot {
        log("boot failed: simulated")
        exit(3)
    }
}

/// Sends READY=1 unless `--never-ready` or a drain already began (READY=1 must never follow
/// STOPPING=1).
func announceReadiness(options: Options, state: WorkerState) {
    guard !options.neverReady else {
        log("serving; never ready (--never-ready)")
        return
    }
    switch state.unlessDraining({ sd_notify(0, "READY=1\nSTATUS=serving") }) {
    case nil: break
    case let result? where result < 0: log("serving; sd_notify failed: \(errorText(-result))")
    case 0: log("ready (NOTIFY_SOCKET unset)")
    default: log("ready")
    }
}

runWorker()
