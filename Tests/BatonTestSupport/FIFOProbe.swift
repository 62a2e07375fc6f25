import Dispatch
import Glibc
import Synchronization

/// For code that must never wait on a FIFO (an operator's path that names one): makes one, and
/// runs the code with a rescuer that opens the FIFO for writing if the code has not returned
/// within 10 s, so a test of old code that blocks fails instead of hanging.
public enum FIFOProbe {
    /// Makes a FIFO at `directory`/`name` and returns its path.
    public static func make(in directory: String, name: String = "fifo") -> String {
        let path = directory + "/" + name
        precondition(mkfifo(path, 0o644) == 0, "mkfifo \(path): \(String(cString: strerror(errno)))")
        return path
    }

    /// Runs `body` on this thread; whether it had to be released from `fifo` (it had not
    /// returned after 10 s, and a writer's open let a blocked open of the FIFO return).
    public static func blocks(on fifo: String, _ body: () -> Void) -> Bool {
        let finished = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        let blocked = Mutex(false)
        DispatchQueue.global().async {
            if finished.wait(timeout: .now() + 10) == .timedOut {
                blocked.withLock { $0 = true }
                let writer = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if writer >= 0 { close(writer) }
            }
            released.signal()
        }
        body()
        finished.signal()
        released.wait()
        return blocked.withLock { $0 }
    }
}
