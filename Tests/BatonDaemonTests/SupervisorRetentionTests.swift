import BatonCore
@testable import BatonDaemon
import BatonSystem
import Glibc
import Testing

/// What an operation or a worker leaves behind once it is over: nothing that grows with them (a
/// soak audit saw baton's memory grow with every reload: TOMLKit's parse, not these).
@Suite struct SupervisorRetentionTests {
    final class Weak<T: AnyObject> {
        weak var value: T?
        init(_ value: T?) { self.value = value }
    }

    @Test func oldWorkersAndOperationsAreFreed() throws {
        let h = try DaemonHarness(workers: 3) { $0.deploy.stabilityWindow = .zero }
        try h.start()
        var workers: [Weak<Worker>] = h.supervisor.slots.compactMap { $0.current }.map { Weak($0) }
        var ops: [Weak<Operation>] = []
        for _ in 0..<3 {
            let reload = h.reload()
            ops.append(Weak(h.supervisor.operation))
            h.finishOperations()
            h.advance(by: .seconds(1))
            #expect(reload.reply?.ok == true)
        }
        h.advance(by: .seconds(120))
        // An offload pool thread drops the job it ran (a reload's config read, which holds its
        // operation) just after the completion ran on the loop: give it a moment (bounded: 2 s;
        // a full parallel run saw one operation still held when checked at once).
        for _ in 0..<200 where workers.contains(where: { $0.value != nil }) || ops.contains(where: { $0.value != nil }) {
            usleep(10_000)
        }
        let alive = workers.filter { $0.value != nil }.count
        let opsAlive = ops.filter { $0.value != nil }.count
        #expect(alive == 0, "\(alive) old workers still referenced")
        #expect(opsAlive == 0, "\(opsAlive) old operations still referenced")
        workers = []
        ops = []
    }
}
