// `swift build -c release --static-swift-stdlib` (README's host build, `make bench`) builds
// every regular target, this one too, and the static SDK has no Testing module: there the
// file is empty (no product links it; only the test targets, built with --build-tests, do).
#if canImport(Testing)
    import BatonTestSupport
    import Glibc
    import Synchronization
    import Testing

    /// Runs each test case of a suite (or one test) on a thread of its own instead of Swift's
    /// cooperative pool (`.ownThread`).
    ///
    /// Swift Testing runs every test as a task on the cooperative pool, whose width is the CPU
    /// count. A test that blocks its thread (waiting for a process's line or exit, a load
    /// client's progress, an HTTP reply) holds a pool thread for seconds while idle: two such
    /// tests on a 2-core machine stop every other test, and the `.serialized` chains meant to
    /// run beside each other take turns instead. Under this trait the test case's task prefers
    /// a `ThreadExecutor` (SE-0417): its jobs, the test body among them (a synchronous body too:
    /// the runner calls it from the scoped task), and its structured child tasks run on that
    /// thread; the pool stays free for the tests that compute. The thread ends, its queue
    /// drained, when the test case ends.
    ///
    /// Recursive: on a suite it reaches every test of the suite and of its nested suites.
    /// For tests that wait on processes, sockets or time; not for tests that compute (those
    /// gain nothing from a thread beyond the cores).
    public struct OwnThreadTrait: SuiteTrait, TestTrait, TestScoping {
        public init() {}

        public var isRecursive: Bool { true }

        public func provideScope(
            for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
        ) async throws {
            try await ThreadExecutor.run(function)
        }
    }

    extension Trait where Self == OwnThreadTrait {
        /// Each test case runs on a thread of its own, off the cooperative pool (`OwnThreadTrait`).
        public static var ownThread: Self { OwnThreadTrait() }
    }

    /// A `TaskExecutor` backed by one thread it owns: jobs run there one at a time, in the order
    /// they come. `end()` lets the thread run what is queued, then end; the thread is joined.
    public final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
        // @unchecked: `available` points at a POSIX semaphore (thread-safe by its contract)
        // allocated once and never reassigned; `thread` is set once in init; the rest is in
        // a Mutex or atomic.
        private struct State {
            /// Jobs not yet run.
            var jobs: [UnownedJob] = []
            /// `end()` was called: once the queue is empty the thread ends.
            var ending = false
            /// The thread has ended: a job that still comes goes to the global executor.
            var ended = false
            /// Called on the thread once it has run its last job.
            var onEnd: (@Sendable () -> Void)?
        }

        /// The executor the current task runs its test case on, inside `run`.
        @TaskLocal public static var current: ThreadExecutor?

        private let state = Mutex(State())
        /// One post per job queued, one for `end()`.
        private let available: UnsafeMutablePointer<sem_t>
        private let threadTID = Atomic<Int32>(0)
        private let jobsRun = Atomic<Int>(0)
        private var thread: BatonTestSupport.Thread!

        /// Starts the thread.
        public init() {
            available = .allocate(capacity: 1)
            sem_init(available, 0, 0)
            thread = Thread { [self] in work() }
        }

        deinit {
            sem_destroy(available)
            available.deallocate()
        }

        /// Runs `operation` with every job of the current task, and of its child tasks, on a new
        /// executor's thread; then ends that thread.
        public static func run<T: Sendable>(_ operation: @Sendable () async throws -> T) async throws -> T {
            let executor = ThreadExecutor()
            let result: Result<T, any Error>
            do {
                result = .success(
                    try await withTaskExecutorPreference(executor) {
                        try await $current.withValue(executor) { try await operation() }
                    })
            } catch {
                result = .failure(error)
            }
            await executor.end()
            return try result.get()
        }

        /// The thread's kernel id (0 until the thread has started).
        public var threadID: Int32 { threadTID.load(ordering: .acquiring) }

        /// Jobs the thread has run so far.
        public var jobCount: Int { jobsRun.load(ordering: .acquiring) }

        public func enqueue(_ job: consuming ExecutorJob) {
            let unowned = UnownedJob(job)
            let queued = state.withLock { s -> Bool in
                guard !s.ended else { return false }
                s.jobs.append(unowned)
                return true
            }
            if queued {
                sem_post(available)
            } else {
                // A job after the end (none comes from a structured scope): run it on the pool
                // rather than lose it.
                globalConcurrentExecutor.enqueue(ExecutorJob(unowned))
            }
        }

        /// Lets the thread run every job queued so far, and those they queue, then end; returns
        /// once the thread has ended (joined). Safe to call from the thread itself: the caller
        /// suspends, and resumes on the global executor after the end.
        public func end() async {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                state.withLock {
                    $0.ending = true
                    $0.onEnd = { done.resume() }
                }
                sem_post(available)
            }
            thread.join()
        }

        /// The thread's body: run jobs until `end()` and an empty queue.
        private func work() {
            threadTID.store(currentThreadID(), ordering: .releasing)
            while true {
                while sem_wait(available) != 0 {}  // EINTR
                let next = state.withLock { s -> (job: UnownedJob?, onEnd: (@Sendable () -> Void)?) in
                    if !s.jobs.isEmpty { return (s.jobs.removeFirst(), nil) }
                    guard s.ending else { return (nil, nil) }
                    s.ended = true
                    return (nil, s.onEnd)
                }
                if let job = next.job {
                    job.runSynchronously(on: asUnownedTaskExecutor())
                    jobsRun.add(1, ordering: .releasing)
                } else if let onEnd = next.onEnd {
                    onEnd()
                    return
                }
            }
        }
    }

    /// The calling thread's kernel id (gettid), read from /proc/thread-self ("PID/task/TID"):
    /// Glibc's `gettid` is not visible to Swift here.
    public func currentThreadID() -> Int32 {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &buffer, buffer.count - 1)
        guard n > 0 else { return 0 }
        let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return link.split(separator: "/").last.flatMap { Int32($0) } ?? 0
    }
#endif
