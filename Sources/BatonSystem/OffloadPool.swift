import DequeModule
import Glibc
import Synchronization

/// A bounded pool of threads for blocking work that must not run on the event
/// loop: walking the page tables of many workers, removing a release folder
/// with a large `node_modules`. At most `maxThreads` threads exist; they are
/// made on demand, live as long as the process, and take jobs first in, first
/// out. One job at a time per thread, so a slow job delays later ones instead
/// of multiplying threads (the old code made one detached thread per job).
public final class OffloadPool: @unchecked Sendable {
    // @unchecked: `available` points at a POSIX semaphore (thread-safe by its
    // contract) allocated once and never reassigned; the rest is in a Mutex.
    /// The pool `EventLoop.offload` uses: two threads, like the machine's cores.
    public static let shared = OffloadPool(maxThreads: 2)

    private struct State {
        /// Jobs not yet taken.
        var jobs = Deque<@Sendable () -> Void>()
        /// Threads made so far.
        var threads = 0
        /// Threads waiting for a job.
        var idle = 0
    }

    /// Most threads this pool makes.
    public let maxThreads: Int
    private let state = Mutex(State())
    /// Counts jobs queued and not yet taken; idle threads wait on it.
    private let available: UnsafeMutablePointer<sem_t>

    /// Creates a pool that makes at most `maxThreads` threads.
    public init(maxThreads: Int) {
        precondition(maxThreads > 0)
        self.maxThreads = maxThreads
        available = .allocate(capacity: 1)
        sem_init(available, 0, 0)
    }

    deinit {
        // Only pools without threads can go away (threads hold the pool).
        sem_destroy(available)
        available.deallocate()
    }

    /// Threads made so far (at most `maxThreads`).
    public var threadCount: Int { state.withLock { $0.threads } }

    /// Queues `job`; a new thread is made only when none is idle and the bound allows.
    /// If no thread can be made at all, `job` runs on the caller's thread.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        let grow = state.withLock { s -> Bool in
            s.jobs.append(job)
            guard s.idle == 0, s.threads < maxThreads else { return false }
            s.threads += 1
            return true
        }
        sem_post(available)
        if grow && !startThread() {
            let nobody = state.withLock { s -> Bool in
                s.threads -= 1
                return s.threads == 0
            }
            if nobody { runQueuedJobsHere() }
        }
    }

    /// The body of each pool thread: take a job, run it, forever.
    private func work() {
        while true {
            state.withLock { $0.idle += 1 }
            while sem_wait(available) != 0 {}  // EINTR
            let job = state.withLock { s -> (@Sendable () -> Void)? in
                s.idle -= 1
                return s.jobs.popFirst()
            }
            job?()
        }
    }

    private func startThread() -> Bool {
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { arg in
                let pool = Unmanaged<OffloadPool>.fromOpaque(arg!).takeRetainedValue()
                pool.work()
                return nil
            }, box)
        if rc != 0 {
            Unmanaged<OffloadPool>.fromOpaque(box).release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// No thread could ever be made: run what is queued inline.
    private func runQueuedJobsHere() {
        while sem_trywait(available) == 0 {
            guard let job = state.withLock({ $0.jobs.popFirst() }) else { return }
            job()
        }
    }
}
