import BatonCore
import Testing

private typealias Action = RollingRestart.Action

/// What the supervisor still owes the machine: a new worker's fate, an old worker's exit.
private enum Pending: Equatable, Comparable {
    case newWorker(Int)
    case oldWorker(Int)
    /// The stability window of the slot's ready new worker passes.
    case stable(Int)
}

/// The workers behind the slots, as the actions leave them.
private struct Model {
    let slots: [Int]
    /// Workers accepting on the socket (old or new), by slot.
    var serving: [Int: Int]
    /// New workers not ready yet, by slot.
    var starting: [Int: Int] = [:]
    /// Old workers told to stop and still alive, by slot.
    var draining: [Int: Int] = [:]
    /// Slots whose new worker serves.
    var newServing: Set<Int> = []
    /// Slots whose new worker passed its stability window.
    var stable: Set<Int> = []
    /// surge + canary: slots whose new worker is ready (accepting beside the old one) while the
    /// canary has not passed; promoted once it did.
    var held: Set<Int> = []

    init(slots: [Int]) {
        self.slots = slots
        serving = Dictionary(uniqueKeysWithValues: slots.map { ($0, 1) })
    }

    func inFlight(_ s: Int) -> Bool { starting[s, default: 0] + draining[s, default: 0] > 0 || held.contains(s) }
    var inReplacement: [Int] { slots.filter(inFlight) }
    var alive: Int { slots.reduce(0) { $0 + serving[$1]! + starting[$1, default: 0] + draining[$1, default: 0] } + held.count }

    /// Whether the canary (the first slot) passed: with windows awaited, its new worker serves
    /// and is stable (its old worker may still drain); without, the slot is done.
    func canaryPassed(awaitsStability: Bool) -> Bool {
        guard let first = slots.first else { return true }
        guard awaitsStability else { return phase(first, .surge) == .done }
        return newServing.contains(first) && stable.contains(first)
    }

    /// The rollback rule (docs/ARCHITECTURE.md, *Operations*): after a failure, the slots needing the previous settings
    /// back are those a new worker serves and those nothing serves.
    func expectedFailure(slot: Int, reason: String) -> [Action] {
        let abandon = slots.filter { starting[$0, default: 0] > 0 || held.contains($0) }.map { Action.abandonNew(slot: $0) }
        let replaced = slots.filter { newServing.contains($0) || serving[$0] == 0 }
        return abandon + [.finished(.failed(slot: slot, reason: reason, replaced: replaced))]
    }

    /// The phase the machine must report for `s`.
    func phase(_ s: Int, _ strategy: RollingRestart.Strategy) -> RollingRestart.SlotPhase {
        if starting[s, default: 0] > 0 || held.contains(s) { return strategy == .surge ? .startingNew : .startingAfterDrain }
        if draining[s, default: 0] > 0 { return .drainingOld }
        return newServing.contains(s) ? .done : .pending
    }

    var key: String {
        "\(slots.map { serving[$0]! })\(slots.map { starting[$0, default: 0] })\(slots.map { draining[$0, default: 0] })\(newServing.sorted())\(stable.sorted())\(held.sorted())"
    }
}

/// One configuration of a rollout.
struct RolloutConfig: Sendable, CustomStringConvertible {
    var strategy: RollingRestart.Strategy
    var slots: [Int]
    var maxSurge = 1
    var canary = false
    var awaitsStability = false
    var description: String {
        "\(strategy) slots \(slots) max_surge \(maxSurge) canary \(canary)" + (awaitsStability ? " stability window" : "")
    }
}

/// The machine plus the world it acts on.
private struct World {
    let config: RolloutConfig
    var machine: RollingRestart
    var model: Model
    var pending: [Pending] = []
    var trace: [Action] = []

    init(_ config: RolloutConfig) {
        self.config = config
        machine = RollingRestart(
            slots: config.slots, strategy: config.strategy, maxSurge: config.maxSurge, canary: config.canary,
            awaitsStability: config.awaitsStability)
        model = Model(slots: config.slots)
    }

    mutating func apply(_ actions: [Action]) {
        for (i, action) in actions.enumerated() {
            trace.append(action)
            switch action {
            case .startNew(let s):
                model.starting[s, default: 0] += 1
                pending.append(.newWorker(s))
            case .drainOld(let s):
                #expect(config.strategy == .replace, "\(config): drainOld is replace's")
                drain(s)
            case .promote(let s):
                // A held new worker (ready while the canary settled) now counts as the slot's.
                if model.held.remove(s) != nil {
                    model.serving[s]! += 1
                    model.newServing.insert(s)
                }
                // surge: the new worker serves beside the old one, which drains now.
                if config.strategy == .surge { drain(s) }
            case .abandonNew(let s):
                if model.held.remove(s) != nil {
                    pending.removeAll { $0 == .stable(s) }
                } else {
                    model.starting[s, default: 0] -= 1
                }
                pending.removeAll { $0 == .newWorker(s) }
            case .finished:
                #expect(i == actions.count - 1, "\(config): actions after finished: \(actions)")
            }
        }
    }

    /// The slot's old worker is told to stop.
    mutating func drain(_ s: Int) {
        model.serving[s]! -= 1
        model.draining[s, default: 0] += 1
        pending.append(.oldWorker(s))
    }

    mutating func ready(_ s: Int) {
        model.starting[s]! -= 1
        if config.canary, config.strategy == .surge, s != config.slots.first, !model.canaryPassed(awaitsStability: config.awaitsStability) {
            // Not the slot's yet: it accepts beside the old worker until the canary passed.
            model.held.insert(s)
            if config.awaitsStability { pending.append(.stable(s)) }
            apply(machine.newWorkerReady(slot: s))
            return
        }
        model.serving[s]! += 1
        model.newServing.insert(s)
        if config.awaitsStability { pending.append(.stable(s)) }
        apply(machine.newWorkerReady(slot: s))
    }

    /// The slot's new worker stayed up through its window.
    mutating func stable(_ s: Int) {
        model.stable.insert(s)
        apply(machine.workerStable(slot: s))
    }

    mutating func exited(_ s: Int) {
        model.draining[s]! -= 1
        apply(machine.oldWorkerExited(slot: s))
    }

    /// A new worker fails (while starting, or dies after it was ready): the rollout ends.
    mutating func fail(_ s: Int) {
        if model.starting[s, default: 0] > 0 {
            model.starting[s]! -= 1
        } else if model.held.remove(s) != nil {
            pending.removeAll { $0 == .stable(s) }
        } else {
            model.serving[s]! -= 1
            model.newServing.remove(s)
            pending.removeAll { $0 == .stable(s) }
        }
        let expected = model.expectedFailure(slot: s, reason: "exit code 1")
        let actions = machine.newWorkerFailed(slot: s, reason: "exit code 1")
        #expect(actions == expected, "\(config): failure of slot \(s) after \(trace)")
        apply(actions)
    }

    /// The invariants of docs/ARCHITECTURE.md, checked while the rollout runs.
    func checkInvariants() {
        let n = config.slots.count
        let inReplacement = model.inReplacement
        let unserved = config.slots.filter { model.serving[$0] == 0 }
        #expect(config.slots.allSatisfy { (0...1).contains(model.serving[$0]!) }, "\(config): \(model.serving)")
        #expect(config.slots.allSatisfy { model.starting[$0, default: 0] <= 1 && model.draining[$0, default: 0] <= 1 })
        switch config.strategy {
        case .surge:
            #expect(unserved.isEmpty, "\(config): slots \(unserved) without a serving worker after \(trace)")
            #expect(inReplacement.count <= config.maxSurge, "\(config): \(inReplacement) in replacement")
            #expect(model.alive <= n + config.maxSurge, "\(config): \(model.alive) workers after \(trace)")
            // Before the canary passed, other slots' new workers may boot (and be held ready)
            // beside their old ones, but no other old worker drains.
            if config.canary, let first = config.slots.first, !model.canaryPassed(awaitsStability: config.awaitsStability) {
                let touched = config.slots.filter { $0 != first && (model.draining[$0, default: 0] > 0 || model.newServing.contains($0)) }
                #expect(touched.isEmpty, "\(config): slots \(touched) drained beside the canary after \(trace)")
            }
        case .replace:
            #expect(unserved.count <= 1, "\(config): slots \(unserved) without a serving worker after \(trace)")
            #expect(inReplacement.count <= 1, "\(config): \(inReplacement) in replacement")
            #expect(model.alive <= n, "\(config): replace ran an extra worker after \(trace)")
        }
        #expect(machine.inFlightSlots == inReplacement)
        #expect(machine.currentSlot == inReplacement.first)
        #expect(machine.replacedSlots == config.slots.filter { model.newServing.contains($0) })
        for s in config.slots { #expect(machine.phase(of: s) == model.phase(s, config.strategy)) }
        #expect(machine.phases == config.slots.map { model.phase($0, config.strategy) })
    }

    /// Events that must be ignored in the current state.
    func checkIgnoredEvents() {
        var m = machine
        let foreign = (config.slots.max() ?? 0) + 1
        #expect(m.start() == [])
        #expect(m.newWorkerReady(slot: foreign) == [] && m.newWorkerFailed(slot: foreign, reason: "x") == [])
        #expect(m.oldWorkerExited(slot: foreign) == [] && m.phase(of: foreign) == nil)
        #expect(m.workerStable(slot: foreign) == [])
        for s in config.slots {
            let phase = model.phase(s, config.strategy)
            let newServes = phase == .done || (config.strategy == .surge && phase == .drainingOld) || model.held.contains(s)
            if !config.awaitsStability || !newServes || model.stable.contains(s) { #expect(m.workerStable(slot: s) == []) }
            if phase != .drainingOld { #expect(m.oldWorkerExited(slot: s) == []) }
            if phase != .startingNew && phase != .startingAfterDrain { #expect(m.newWorkerReady(slot: s) == []) }
            if phase == .pending || (config.strategy == .replace && phase == .drainingOld) {
                #expect(m.newWorkerFailed(slot: s, reason: "x") == [])
            }
        }
        #expect(m == machine, "\(config): an ignored event changed the machine")
    }

    var key: String { "\(machine.phases)|\(pending.sorted())|\(model.key)" }
}

/// Explores every order of events and every failure point; returns how many states it saw.
private func explore(_ config: RolloutConfig) -> Int {
    var world = World(config)
    world.apply(world.machine.start())
    var visited: Set<String> = []
    var stack = [world]
    while let w = stack.popLast(), visited.count < 200_000 {
        guard visited.insert(w.key).inserted else { continue }
        if w.machine.isFinished {
            #expect(w.pending.isEmpty && w.machine.result == .succeeded, "\(config): finished early: \(w.trace)")
            #expect(config.slots.allSatisfy { w.model.serving[$0] == 1 && w.model.newServing.contains($0) })
            if config.awaitsStability { #expect(Set(config.slots) == w.model.stable, "\(config): finished before every window") }
            #expect(w.machine.replacedSlots == config.slots && w.machine.inFlightSlots == [])
            continue
        }
        w.checkInvariants()
        w.checkIgnoredEvents()
        #expect(!w.pending.isEmpty, "\(config): stuck after \(w.trace)")
        // Leaves: aborted from outside here; a ready new worker dies here.
        var aborted = w
        #expect(aborted.machine.abort(reason: "deadline") == w.model.expectedFailure(slot: -1, reason: "deadline"))
        for s in config.slots where w.model.newServing.contains(s) || w.model.held.contains(s) {
            var died = w
            died.fail(s)
            #expect(died.machine.isFinished)
        }
        var tried: [Pending] = []
        for p in w.pending where !tried.contains(p) {
            tried.append(p)
            var next = w
            next.pending.remove(at: next.pending.firstIndex(of: p)!)
            switch p {
            case .newWorker(let s):
                var failed = next
                failed.fail(s)
                #expect(failed.machine.isFinished && failed.model.starting.values.allSatisfy { $0 == 0 })
                next.ready(s)
            case .oldWorker(let s):
                next.exited(s)
            case .stable(let s):
                next.stable(s)
            }
            stack.append(next)
        }
    }
    return visited.count
}

/// Runs a rollout delivering events first-come first-served; `failing` fails instead of becoming ready.
private func run(_ config: RolloutConfig, failing: Int? = nil) -> World {
    var w = World(config)
    w.apply(w.machine.start())
    while !w.pending.isEmpty, !w.machine.isFinished {
        switch w.pending.removeFirst() {
        case .newWorker(let s): if s == failing { w.fail(s) } else { w.ready(s) }
        case .oldWorker(let s): w.exited(s)
        case .stable(let s): w.stable(s)
        }
        if !w.machine.isFinished { w.checkInvariants() }
    }
    return w
}

/// Every strategy, width and canary setting for 1 to 4 slots, then two with unordered slots.
/// (Built in typed steps: one expression of chained `+` over closures took the type checker
/// 7.5 s, the longest single step of the test build.)
private let plainConfigs: [RolloutConfig] = (1...4).flatMap { (n: Int) -> [RolloutConfig] in
    let slots = Array(0..<n)
    var configs = [RolloutConfig(strategy: .replace, slots: slots), RolloutConfig(strategy: .replace, slots: slots, canary: true)]
    for surge in 1...3 {
        for canary in [false, true] { configs.append(RolloutConfig(strategy: .surge, slots: slots, maxSurge: surge, canary: canary)) }
    }
    return configs
}

/// The same with a stability window (up to 3 slots: each window adds an event to interleave).
private let stabilityConfigs: [RolloutConfig] = (1...3).flatMap { (n: Int) -> [RolloutConfig] in
    let slots = Array(0..<n)
    return [
        RolloutConfig(strategy: .replace, slots: slots, canary: true, awaitsStability: true),
        RolloutConfig(strategy: .surge, slots: slots, maxSurge: 1, canary: true, awaitsStability: true),
        RolloutConfig(strategy: .surge, slots: slots, maxSurge: 2, canary: true, awaitsStability: true),
        RolloutConfig(strategy: .surge, slots: slots, maxSurge: 2, awaitsStability: true),
    ]
}

private let allConfigs: [RolloutConfig] =
    plainConfigs + [RolloutConfig(strategy: .surge, slots: [3, 1, 2], maxSurge: 2), RolloutConfig(strategy: .replace, slots: [3, 1, 2])]
    + stabilityConfigs

@Suite("RollingRestart")
struct RollingRestartTests {
    @Test(arguments: allConfigs)
    func everyInterleavingKeepsTheInvariants(config: RolloutConfig) {
        let states = explore(config)
        // One slot at a time: start, then two events per slot.
        if !config.awaitsStability, config.strategy == .replace || config.maxSurge == 1 { #expect(states == 2 * config.slots.count + 1) }
        #expect(states > config.slots.count)
    }

    @Test(arguments: [1, 2, 4])
    func surgeSequence(n: Int) {
        let w = run(RolloutConfig(strategy: .surge, slots: Array(0..<n)))
        #expect(w.trace == (0..<n).flatMap { [Action.startNew(slot: $0), .promote(slot: $0)] } + [.finished(.succeeded)])
        #expect(w.machine.result == .succeeded && w.machine.replacedSlots == Array(0..<n))
    }

    @Test(arguments: [1, 2, 4])
    func replaceSequence(n: Int) {
        let w = run(RolloutConfig(strategy: .replace, slots: Array(0..<n), maxSurge: 3))
        #expect(w.trace == (0..<n).flatMap { [Action.drainOld(slot: $0), .startNew(slot: $0), .promote(slot: $0)] } + [.finished(.succeeded)])
    }

    @Test func explicitTwoSlotSequences() {
        #expect(
            run(RolloutConfig(strategy: .surge, slots: [0, 1])).trace == [
                .startNew(slot: 0), .promote(slot: 0), .startNew(slot: 1), .promote(slot: 1), .finished(.succeeded),
            ])
        #expect(
            run(RolloutConfig(strategy: .replace, slots: [0, 1])).trace == [
                .drainOld(slot: 0), .startNew(slot: 0), .promote(slot: 0), .drainOld(slot: 1), .startNew(slot: 1), .promote(slot: 1),
                .finished(.succeeded),
            ])
    }

    @Test(arguments: [RollingRestart.Strategy.surge, .replace])
    func canaryFailureEndsTheRollout(strategy: RollingRestart.Strategy) {
        let w = run(RolloutConfig(strategy: strategy, slots: [0, 1, 2, 3], canary: true), failing: 0)
        // replace had drained slot 0's old worker: nothing serves it, so it needs the previous settings back.
        let replaced = strategy == .surge ? [] : [0]
        #expect(w.trace.last == .finished(.failed(slot: 0, reason: "exit code 1", replaced: replaced)))
        #expect(!w.trace.contains { $0 == .startNew(slot: 1) || $0 == .drainOld(slot: 1) })
        var m = w.machine
        // No new worker serves anywhere (`replacedSlots`), whatever the outcome asks to restore.
        #expect(m.isFinished && m.replacedSlots == [])
        #expect(m.start() == [] && m.newWorkerReady(slot: 0) == [] && m.oldWorkerExited(slot: 0) == [])
        #expect(m.newWorkerFailed(slot: 0, reason: "again") == [] && m.abort(reason: "late") == [])
        #expect(m == w.machine)
    }

    @Test(arguments: [RollingRestart.Strategy.surge, .replace])
    func failureOfTheThirdSlot(strategy: RollingRestart.Strategy) {
        let w = run(RolloutConfig(strategy: strategy, slots: [0, 1, 2, 3]), failing: 2)
        let replaced = strategy == .surge ? [0, 1] : [0, 1, 2]
        #expect(w.machine.result == .failed(slot: 2, reason: "exit code 1", replaced: replaced))
        #expect(!w.trace.contains { $0 == .startNew(slot: 3) || $0 == .drainOld(slot: 3) })
        #expect(w.trace.contains(.drainOld(slot: 2)) == (strategy == .replace))
        #expect(w.model.serving[2] == (strategy == .surge ? 1 : 0))
    }
}
