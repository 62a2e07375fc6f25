import BatonSystem
import Glibc

/// "spawn cost": what starting one process costs the process that starts it, through baton's
/// own launcher (`LinuxProcessLauncher`), in its two ways: the child sharing the spawner's
/// memory until execve (every spawn but one with `memoryMerge`) and a fork (a spawn with
/// `memoryMerge`, whose child also asks for KSM before execve). The spawner holds `heldMiB`
/// of touched private memory (none, then as much as a busy supervisor or a test runner);
/// each round spawns `/bin/true`, waits for it, then writes one byte in every page of that
/// memory, as the spawner's own work would. Per round, medians over `rounds`: the spawn
/// call's time (until the child's execve), this thread's CPU for it, and the page faults
/// and time the writes after it took.
struct SpawnCost {
    let options: BenchOptions

    struct Row: Codable {
        var path: String
        var heldMiB: Int
        var rounds: Int
        var spawnMicros: Double
        var spawnCPUMicros: Double
        var faultsAfter: Double
        var rewriteMicros: Double
    }

    struct Result: Codable {
        var scenario = "spawn-cost"
        var rows: [Row]
    }

    func run() throws {
        let rounds = options.quick ? 10 : 50
        var rows: [Row] = []
        for heldMiB in [0, 64, 512] {
            for memoryMerge in [false, true] {
                rows.append(try measure(heldMiB: heldMiB, memoryMerge: memoryMerge, rounds: rounds))
            }
        }
        let result = Result(rows: rows)
        print("")
        print("spawn cost (LinuxProcessLauncher, /bin/true; medians; CPU and faults: the spawning thread's)")
        print("| path | spawner holds MiB | spawn µs | spawn CPU µs | faults writing it after | those writes µs |")
        print("|---|---|---|---|---|---|")
        for r in rows {
            print(
                "| \(r.path) | \(r.heldMiB) | \(fixed(r.spawnMicros, 0)) | \(fixed(r.spawnCPUMicros, 0)) | \(fixed(r.faultsAfter, 0)) | "
                    + "\(fixed(r.rewriteMicros, 0)) |")
        }
        try writeResult(result, name: "spawn-cost", directory: options.outputDirectory)
    }

    private func measure(heldMiB: Int, memoryMerge: Bool, rounds: Int) throws -> Row {
        let size = max(heldMiB, 1) << 20
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else {
            throw SystemError("mmap \(heldMiB) MiB")
        }
        defer { munmap(memory, size) }
        let bytes = memory.assumingMemoryBound(to: UInt8.self)
        let pages = heldMiB == 0 ? 0 : size / page
        func writeEveryPage(_ value: UInt8) {
            for index in 0..<pages { bytes[index * page] = value }
        }
        writeEveryPage(1)
        var request = SpawnRequest(argv: ["/bin/true"], environment: ["PATH=/usr/bin:/bin"])
        request.memoryMerge = memoryMerge
        var spawnTimes: [Double] = []
        var spawnCPU: [Double] = []
        var faults: [Double] = []
        var rewrites: [Double] = []
        for round in 0..<rounds {
            let (cpu0, _) = Self.threadUsage()
            let began = monotonicNow()
            let child = try LinuxProcessLauncher().spawn(request)
            let spawned = monotonicNow()
            let (cpu1, _) = Self.threadUsage()
            var poller = pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 10_000)
            _ = CBatonLinuxShim.exitStatus(pidfd: child.pidfd, reap: true)
            child.close()
            let (_, faults1) = Self.threadUsage()
            let rewriteBegan = monotonicNow()
            writeEveryPage(UInt8(truncatingIfNeeded: round))
            let rewritten = monotonicNow()
            let (_, faults2) = Self.threadUsage()
            spawnTimes.append(seconds(spawned - began) * 1e6)
            spawnCPU.append((cpu1 - cpu0) * 1e6)
            faults.append(Double(faults2 - faults1))
            rewrites.append(seconds(rewritten - rewriteBegan) * 1e6)
        }
        return Row(
            path: memoryMerge ? "fork (memoryMerge)" : "shared memory (default)", heldMiB: heldMiB, rounds: rounds,
            spawnMicros: median(spawnTimes), spawnCPUMicros: median(spawnCPU), faultsAfter: median(faults),
            rewriteMicros: median(rewrites))
    }

    /// This thread's CPU time (seconds) and minor faults so far.
    private static func threadUsage() -> (cpu: Double, minorFaults: Int) {
        var usage = rusage()
        getrusage(rusageThread, &usage)
        return (threadCPUSeconds(), usage.ru_minflt)
    }
}
