import CSystemd
import Glibc

/// SIGTERM and SIGINT handling: blocked in every thread and taken by one thread with
/// `sigwait(3)`, so the work a signal triggers runs as ordinary code, not in a handler.
enum Signals {
    /// The signals that start the graceful drain.
    static let drainSignals: [Int32] = [SIGTERM, SIGINT]

    /// Blocks the drain signals and resets their dispositions. Call on the main thread before
    /// any other thread exists: threads inherit the mask, so no thread but the waiter ever
    /// receives them.
    ///
    /// Only adds to the mask (`SIG_BLOCK`): whatever else the parent left blocked stays as it
    /// was. The dispositions go back to `SIG_DFL` because a parent may have left them ignored,
    /// and an ignored signal may be discarded before `sigwait` can take it.
    static func blockDrainSignals() {
        var set = signalSet()
        let result = pthread_sigmask(SIG_BLOCK, &set, nil)
        if result != 0 { fail("pthread_sigmask: \(errorText(result))", status: 1) }
        for signal in drainSignals {
            Glibc.signal(signal, SIG_DFL)
        }
    }

    /// Starts the thread that waits for the drain signals.
    ///
    /// The first signal starts the drain (`STOPPING=1` to the notify socket). A later SIGTERM
    /// is ignored, the drain is already bounded by `--drain-timeout`; a later SIGINT (a second
    /// Ctrl-C) exits 1 at once.
    static func startWaiter(state: WorkerState) {
        let result = spawnDetachedThread(stackSize: 128 * 1024) {
            var set = signalSet()
            while true {
                var signal: Int32 = 0
                guard sigwait(&set, &signal) == 0 else { continue }
                let name = signal == SIGTERM ? "SIGTERM" : "SIGINT"
                let started = state.beginDrain {
                    Notify.withoutBlocking("STOPPING=1\nSTATUS=draining")
                }
                if started {
                    log("\(name): draining")
                } else if signal == SIGINT {
                    log("SIGINT during drain: exiting")
                    _exit(1)
                } else {
                    log("\(name): already draining")
                }
            }
        }
        if result != 0 { fail("cannot start the signal thread: \(errorText(result))", status: 1) }
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in drainSignals {
            sigaddset(&set, signal)
        }
        return set
    }
}
