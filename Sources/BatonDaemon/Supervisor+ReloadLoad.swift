import BatonCore
import BatonSystem
import Glibc

/// A reload reads its config file and waits for the parser child (up to its
/// 10 s timeout) on a thread of its own, not on the event loop: meanwhile
/// `baton status`, signals and workers are served. The file may be slow to
/// read too (a FIFO, a stalled network mount).
extension Supervisor {
    /// One thread: reloads are coalesced, and a read that never ends holds only
    /// this thread, never the pool that samples memory.
    static let configPool = OffloadPool(maxThreads: 1)

    /// Loads the config off the loop, then starts `op` with it, unless the
    /// operation ended meanwhile (its deadline passed, baton is stopping).
    func loadThenStart(_ op: Operation, _ load: @escaping @Sendable () throws -> BatonConfig) {
        logger.info("reload: reading \(options.configPath ?? "the config")")
        loop.offload(on: Self.configPool, { Result { try load() } }) { [unowned self] result in
            guard self.operation === op else { return }
            guard self.phase != .stopping else {
                op.finish(.failure("baton is stopping: reload not finished"))
                return
            }
            op.loadedConfig = result
            self.startOperation(op)
        }
    }
}
