import BatonCore
import BatonSystem
import Glibc

/// Connections no worker accepts. A worker is ready by its own word (READY=1, a delay, a
/// probe), not by accepting on the sockets baton gave it: a habits audit saw `3/3 workers
/// ready` and `deploy finished` (exit 0) while the app served on a port of its own (Node's
/// `listen(PORT)`, gunicorn behind a shell without `exec`, which ignores the socket when
/// LISTEN_PID is not its pid) and every connection to baton's port waited in its accept queue.
/// Each TCP listener's queue (TCP_INFO) is looked at every second; one that stays non-empty
/// while a worker is ready is said once, and shown in `baton status` until it empties.
extension Supervisor {
    /// How often the accept queues are looked at.
    static let acceptQueueInterval = Duration.seconds(1)
    /// How many looks in a row a queue must be non-empty before it is said.
    static let acceptQueueLooks = 5

    /// Looks at the accept queues every ``acceptQueueInterval`` until baton stops.
    func scheduleAcceptQueueCheck() {
        repeatUntilStopping(every: Self.acceptQueueInterval) { [unowned self] in self.checkAcceptQueues() }
    }

    func checkAcceptQueues() {
        let ready = readyCount
        for listener in listeners {
            guard let waiting = Sockets.acceptQueueLength(listener.fd) else { continue }
            let address = listener.address
            // No worker says it serves: a start or a crash loop says so already.
            guard waiting > 0, ready > 0 else {
                acceptQueueLooks[address] = nil
                if waiting == 0, unacceptedListeners.removeValue(forKey: address) != nil {
                    logger.info("listening socket \(address): its accept queue is empty again")
                }
                continue
            }
            let looks = (acceptQueueLooks[address] ?? 0) + 1
            acceptQueueLooks[address] = looks
            guard looks >= Self.acceptQueueLooks, unacceptedListeners[address] == nil else { continue }
            let problem =
                "listening socket \(address): connections have waited in its accept queue for \(looks) s (\(waiting) now) while \(ready) worker\(ready == 1 ? " is" : "s are") ready: "
                + "none accepts them, or they do not keep up (an app serving on a port of its own, or one that ignores the socket it is given: "
                + "a command behind a shell without exec, LISTEN_PID; see README, Readiness of real servers)"
            unacceptedListeners[address] = problem
            logger.warning("\(problem)")
        }
    }
}
