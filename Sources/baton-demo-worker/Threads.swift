import Glibc

/// A pthread mutex with one condition variable that waits on the monotonic clock.
///
/// `@unchecked Sendable`: the mutex and the condition variable are heap-allocated once, never
/// moved or reassigned, and pthread objects are made to be shared between threads. State that
/// the monitor guards lives in the owner, which touches it only between `lock()` and `unlock()`.
final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Wakes every waiter. Call with the lock held.
    func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits for a broadcast or until `deadline` (monotonic ns; nil = no deadline), whichever
    /// comes first; spurious wake-ups happen, so callers re-check their predicate. Call with
    /// the lock held.
    func wait(until deadline: UInt64?) {
        guard let deadline else {
            pthread_cond_wait(condition, mutex)
            return
        }
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &time)
    }
}

/// What a new thread runs. A final class with one immutable `Sendable` closure is `Sendable`.
private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// The C entry point of every thread: takes back the retained body and runs it.
private func threadEntry(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
    return nil
}

/// Starts a detached pthread running `body`; returns 0 or the `pthread_create` error.
///
/// Threads get a small stack: one runs per connection, and each stack is a private writable
/// mapping that counts against the commit limit (see docs/ARCHITECTURE.md, *Platform facts*).
@discardableResult
func spawnDetachedThread(stackSize: Int = 512 * 1024, _ body: @escaping @Sendable () -> Void) -> Int32 {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attributes, stackSize)

    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, &attributes, threadEntry, context)
    if result != 0 {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
    }
    return result
}
