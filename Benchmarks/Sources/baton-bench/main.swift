import BatonSystem
import Glibc

// baton-bench: the benchmark harness (`make bench`). Each scenario runs real
// baton, real demo workers and a real load client on 127.0.0.1, prints a
// table and writes JSON to Benchmarks/results/. Not a test: nothing here
// asserts a time.

let arguments = Array(CommandLine.arguments.dropFirst())
var options = BenchOptions()
var bootDelayGiven = false
var scenarios: [String] = []
var i = 0
while i < arguments.count {
    let a = arguments[i]
    func value() -> String {
        i += 1
        guard i < arguments.count else { fail("\(a) needs a value") }
        return arguments[i]
    }
    switch a {
    case "--workers": options.workers = Int(value()) ?? options.workers
    case "--connections": options.connections = Int(value()) ?? options.connections
    case "--deploys": options.deploys = Int(value()) ?? options.deploys
    case "--boot-delay":
        options.bootDelay = Double(value()) ?? options.bootDelay
        bootDelayGiven = true
    case "--steady": options.steadySeconds = Double(value()) ?? options.steadySeconds
    case "--out": options.outputDirectory = value()
    case "--quick": options.quick = true
    case "-h", "--help":
        print(
            "usage: baton-bench [deploy-under-load] [deploy-under-load-boot2] [compare] [systemd] [sampling-cost] [deploy-memory] [deploy-reservation] [control-latency] [take-over] [ksm] [spawn-cost] [--workers N] [--connections N] [--deploys N] [--boot-delay S] [--steady S] [--out DIR] [--quick]"
        )
        exit(0)
    default:
        if a.hasPrefix("-") { fail("unknown option \(a)") }
        scenarios.append(a)
    }
    i += 1
}
if options.quick {
    options.deploys = 1
    options.steadySeconds = 2
}
if scenarios.isEmpty { scenarios = ["deploy-under-load"] }
for scenario in scenarios {
    switch scenario {
    case "deploy-under-load":
        do {
            try DeployUnderLoad(options: options).run()
        } catch {
            fail("deploy-under-load: \(error)")
        }
    case "deploy-under-load-boot2":
        // The same with a 2 s boot (unless --boot-delay says otherwise), as issue #16 measures
        // rollout time: with 0.5 s boots the canary's 200 ms stability window (the harness's)
        // is 40 % of a boot, and the ratio's floor is (boot + window + drain) / (boot + drain)
        // ≈ 1.35; with 2 s boots it is ≈ 1.1.
        var slow = options
        if !bootDelayGiven { slow.bootDelay = 2 }
        do {
            try DeployUnderLoad(options: slow, resultName: "deploy-under-load-boot2.json").run()
        } catch {
            fail("deploy-under-load-boot2: \(error)")
        }
    case "systemd": do { try SystemdScenario(options: options).run() } catch { fail("systemd: \(error)") }
    case "sampling-cost": do { try SamplingCost(options: options).run() } catch { fail("sampling-cost: \(error)") }
    case "deploy-memory": do { try DeployMemory(options: options).run() } catch { fail("deploy-memory: \(error)") }
    case "deploy-reservation": do { try DeployReservation(options: options).run() } catch { fail("deploy-reservation: \(error)") }
    case "compare": do { try Compare(options: options).run() } catch { fail("compare: \(error)") }
    case "control-latency": do { try ControlLatency(options: options).run() } catch { fail("control-latency: \(error)") }
    case "take-over": do { try TakeOverScenario(options: options).run() } catch { fail("take-over: \(error)") }
    case "ksm": do { try KSMScenario(options: options).run() } catch { fail("ksm: \(error)") }
    case "spawn-cost": do { try SpawnCost(options: options).run() } catch { fail("spawn-cost: \(error)") }
    default:
        fail(
            "unknown scenario \(scenario) (known: deploy-under-load, deploy-under-load-boot2, compare, systemd, sampling-cost, deploy-memory, deploy-reservation, control-latency, take-over, ksm)"
        )
    }
}

func fail(_ message: String) -> Never {
    writeAll(2, Array("baton-bench: \(message)\n".utf8))
    exit(2)
}
