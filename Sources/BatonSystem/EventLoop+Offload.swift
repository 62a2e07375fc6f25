import Glibc

extension EventLoop {
    /// Runs `work` on a thread of `pool` (by default `OffloadPool.shared`, two
    /// threads), then `completion` with its result on this loop's thread: for
    /// reads and deletions that take long enough to hold the loop (walking the
    /// page tables of many large workers, removing a release with a large
    /// `node_modules`). Call it on the loop's thread. Jobs beyond the pool's
    /// threads wait their turn, first in, first out.
    public func offload<Result: Sendable>(
        on pool: OffloadPool = .shared, _ work: @escaping @Sendable () -> Result, completion: @escaping (Result) -> Void
    ) {
        assertInEventLoop()
        pendingOffloads += 1
        let completion = LoopBound { [unowned self] (result: Result) in
            self.pendingOffloads -= 1
            completion(result)
        }
        pool.submit { [self] in
            let result = work()
            execute { completion.value(result) }
        }
    }
}

/// A value made on the loop thread that crosses another thread untouched and
/// is used again only on the loop thread (through `EventLoop.execute`).
private final class LoopBound<Value>: @unchecked Sendable {
    // @unchecked: never read or called off the loop thread (see above).
    let value: Value
    init(_ value: Value) { self.value = value }
}
