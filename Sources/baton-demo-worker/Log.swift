import Glibc

/// This process's pid, read once: the worker never forks.
let processID = getpid()

/// Writes one event line to stderr: `baton-demo-worker[PID]: message`.
///
/// One `write(2)` per line, so lines of concurrent threads (and of sibling workers sharing
/// the same stderr) never interleave.
func log(_ message: String) {
    writeStderr("baton-demo-worker[\(processID)]: \(message)\n")
}

/// Prints `baton-demo-worker: message` and exits with `status` (usage and start-up errors).
func fail(_ message: String, status: Int32) -> Never {
    writeStderr("baton-demo-worker: \(message)\n")
    exit(status)
}

/// Prints the simulated crash line and exits without cleanup, like a real crash would.
func crash() -> Never {
    log("crashing: simulated")
    _exit(70)
}

func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// `strerror(code)` as a String.
func errorText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

// MARK: - Time

/// Nanoseconds on the monotonic clock (immune to wall-clock jumps).
func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Converts seconds to nanoseconds, saturating instead of trapping.
func nanos(seconds: Double) -> UInt64 {
    seconds >= 1e9 ? UInt64(1e18) : UInt64(max(0, seconds) * 1e9)
}

/// Sleeps the whole duration, resuming after signal interruptions.
func sleepNanos(_ duration: UInt64) {
    var remaining = timespec(tv_sec: Int(duration / 1_000_000_000), tv_nsec: Int(duration % 1_000_000_000))
    var request = remaining
    while nanosleep(&request, &remaining) != 0 && errno == EINTR {
        request = remaining
    }
}
