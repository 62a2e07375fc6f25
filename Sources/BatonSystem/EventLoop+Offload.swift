import Glibc

extension EventLoop {
    /// Runs `work` on a detached thread of its own, then `completion` with its
    /// result on this loop's thread: for reads and deletions that take long
    /// enough to hold the loop (walking the page tables of many large workers,
    /// removing a release with a large `node_modules`). Call it on the loop's
    /// thread. If no thread can be made, `work` runs here, inline, and
    /// `completion` follows on the next loop iteration.
    public func offload<Result: Sendable>(_ work: @escaping @Sendable () -> Result, completion: @escaping (Result) -> Void) {
        let completion = LoopBound(completion)
        let job: @Sendable () -> Void = { [self] in
            let result = work()
            execute { completion.value(result) }
        }
        let box = Unmanaged.passRetained(ThreadBody(job)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { arg in
                Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().body()
                return nil
            }, box)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ThreadBody>.fromOpaque(box).takeRetainedValue().body()
        }
    }
}

/// A closure handed to a new pthread.
private final class ThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// A value made on the loop thread that crosses another thread untouched and
/// is used again only on the loop thread (through `EventLoop.execute`).
private final class LoopBound<Value>: @unchecked Sendable {
    // @unchecked: never read or called off the loop thread (see above).
    let value: Value
    init(_ value: Value) { self.value = value }
}
