import BatonTestSupport
import BatonTestTraits
import Glibc
import Testing

/// `OwnThreadTrait` and its `ThreadExecutor`: what the integration chains rely on to run
/// beside each other instead of taking turns on the cooperative pool.
@Suite("OwnThreadTrait: a test case on a thread of its own")
struct OwnThreadTraitTests {
    @Test(.ownThread) func aSynchronousBodyRunsOnTheTraitsThread() throws {
        let executor = try #require(ThreadExecutor.current)
        #expect(executor.threadID == currentThreadID())
    }

    @Test(.ownThread) func anAsynchronousBodyAndItsChildTasksStayOnIt() async throws {
        let tid = try #require(ThreadExecutor.current).threadID
        #expect(currentThreadID() == tid)
        await Task.yield()
        #expect(currentThreadID() == tid)
        async let child = currentThreadID()
        let children = await withTaskGroup(of: Int32.self) { group in
            for _ in 0..<4 { group.addTask { currentThreadID() } }
            return await group.reduce(into: [Int32]()) { $0.append($1) }
        }
        #expect(await child == tid)
        #expect(children == [tid, tid, tid, tid])
    }

    /// Jobs queued before `end()` all run on the thread before it ends; `end()` returns once
    /// the thread is joined.
    @Test func theThreadRunsWhatIsQueuedThenEnds() async {
        let executor = ThreadExecutor()
        let ran = Protected<[Int32]>([])
        for _ in 0..<50 {
            // Unstructured tasks that prefer the executor: each is one job, queued at once.
            Task(executorPreference: executor) { ran.withLock { $0.append(currentThreadID()) } }
        }
        await executor.end()
        let tids = ran.withLock { $0 }
        #expect(tids.count == 50)
        #expect(Set(tids) == [executor.threadID])
        #expect(executor.jobCount == 50)
    }

    /// One more blocking body than the machine has cores, each waiting until all have
    /// started: on the cooperative pool (as wide as the CPU count) the last could never
    /// start while the others hold every pool thread, so all of them would time out. Each
    /// on its own thread, they all meet.
    @Test func blockingBodiesLeaveThePoolFree() async throws {
        let count = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) + 1
        let arrived = Protected(0)
        let release = Latch()
        let met = Protected(0)
        let test = try #require(Test.current)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try await OwnThreadTrait().provideScope(for: test, testCase: nil) {
                        let arrivals = arrived.withLock { n in
                            n += 1
                            return n
                        }
                        if arrivals == count {
                            for _ in 0..<count { release.signal() }
                        }
                        if release.wait(timeout: .seconds(30)) { met.withLock { $0 += 1 } }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(met.withLock { $0 } == count)
    }
}
