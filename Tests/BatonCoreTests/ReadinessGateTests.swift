import BatonCore
import Testing

@Suite("ReadinessGate")
struct ReadinessGateTests {
    typealias Gate = ReadinessGate

    static func gate(_ mode: ReadinessMode) -> Gate {
        Gate(mode: mode, timeout: .seconds(60), delay: .seconds(2), probeInterval: .milliseconds(500))
    }

    @Test func notifyIsReadyAtReady1() {
        var gate = Self.gate(.notify)
        #expect(gate.handle(.notified).isEmpty, "not spawned yet")
        #expect(gate.handle(.began) == [.armTimeout(.seconds(60))])
        #expect(gate.handle(.delayPassed).isEmpty)
        #expect(gate.handle(.probeExited(succeeded: true)).isEmpty)
        #expect(gate.handle(.notified) == [.ready])
        #expect(gate.state == .ready)
        #expect(gate.handle(.notified).isEmpty, "once")
        #expect(gate.handle(.timeoutPassed).isEmpty, "ready first: the timeout is moot")
    }

    @Test func delayIsReadyOnceItPassedAndIgnoresReady1() {
        var gate = Self.gate(.delay)
        #expect(gate.handle(.began) == [.armTimeout(.seconds(60)), .armDelay(.seconds(2))])
        #expect(gate.handle(.notified).isEmpty)
        #expect(gate.handle(.delayPassed) == [.ready])
    }

    @Test func execRunsOneProbeAtATimeAndAgainAfterEachFailure() {
        var gate = Self.gate(.exec)
        #expect(gate.handle(.began) == [.armTimeout(.seconds(60)), .scheduleProbe(after: .zero)])
        #expect(gate.handle(.probeDue) == [.runProbe])
        #expect(gate.handle(.probeDue).isEmpty, "one run at a time")
        #expect(gate.handle(.probeExited(succeeded: false)) == [.scheduleProbe(after: .milliseconds(500))])
        #expect(gate.handle(.probeDue) == [.runProbe])
        #expect(gate.handle(.probeCouldNotStart) == [.scheduleProbe(after: .milliseconds(500))])
        #expect(gate.handle(.notified).isEmpty)
        #expect(gate.handle(.probeDue) == [.runProbe])
        #expect(gate.handle(.probeExited(succeeded: true)) == [.ready])
    }

    @Test(arguments: [ReadinessMode.notify, .delay, .exec])
    func theTimeoutKillsAWorkerNotReadyAndEndsTheGate(mode: ReadinessMode) {
        var gate = Self.gate(mode)
        _ = gate.handle(.began)
        if mode == .exec { _ = gate.handle(.probeDue) }
        #expect(gate.handle(.timeoutPassed) == [.kill(.readinessTimeout)])
        #expect(gate.state == .timedOut)
        for event in [Gate.Event.notified, .delayPassed, .probeDue, .probeExited(succeeded: true), .timeoutPassed, .began] {
            #expect(gate.handle(event).isEmpty, "\(event) after the timeout")
        }
    }

    @Test func itTakesReadinessConfigsSettings() throws {
        var readiness = try BatonConfig.parse(minimalApp, path: testConfigPath).readiness
        readiness.mode = .delay
        readiness.delay = .seconds(7)
        readiness.timeout = .seconds(9)
        var gate = Gate(readiness)
        #expect(gate.handle(.began) == [.armTimeout(.seconds(9)), .armDelay(.seconds(7))])
    }

    static let alphabet: [Gate.Event] = [
        .began, .notified, .delayPassed, .probeDue, .probeCouldNotStart, .probeExited(succeeded: false), .probeExited(succeeded: true),
        .timeoutPassed,
    ]

    /// Every sequence of five events, in every mode: nothing happens before `began`, which arms
    /// the timeout once; `ready` and `kill` come at most once between them, each only from its
    /// own cause (the mode's signal; the timeout); a probe runs only when scheduled and never
    /// while one is under way.
    @Test(arguments: [ReadinessMode.notify, .delay, .exec])
    func everySequenceOfFiveEventsKeepsTheRules(mode: ReadinessMode) {
        var sequences = 0
        var violations: [String] = []
        func check(_ ok: Bool, _ path: @autoclosure () -> [Gate.Event], _ what: @autoclosure () -> String) {
            if !ok && violations.count < 20 { violations.append("\(what()) after \(path())") }
        }
        struct Seen {
            var began = false
            var ended = false
            var probing = false
            var probeScheduled = false
        }
        func explore(_ gate: Gate, _ seen: Seen, _ path: [Gate.Event]) {
            sequences += 1
            guard path.count < 5 else { return }
            for event in Self.alphabet {
                var gate = gate
                var seen = seen
                let path = path + [event]
                let actions = gate.handle(event)
                if seen.ended || (!seen.began && event != .began) || (seen.began && event == .began) {
                    check(actions.isEmpty, path, "\(actions)")
                }
                for action in actions {
                    switch action {
                    case .armTimeout:
                        check(event == .began, path, "timeout armed")
                    case .armDelay:
                        check(mode == .delay && event == .began, path, "delay armed")
                    case .scheduleProbe:
                        let retry = seen.probing && (event == .probeCouldNotStart || event == .probeExited(succeeded: false))
                        check(mode == .exec && (event == .began || retry), path, "probe scheduled")
                        seen.probing = false
                        seen.probeScheduled = true
                    case .runProbe:
                        check(mode == .exec && event == .probeDue && seen.probeScheduled && !seen.probing, path, "probe run")
                        seen.probing = true
                        seen.probeScheduled = false
                    case .ready:
                        let cause: Gate.Event =
                            switch mode {
                            case .notify: .notified
                            case .delay: .delayPassed
                            case .exec: .probeExited(succeeded: true)
                            }
                        check(event == cause && !seen.ended && (mode != .exec || seen.probing), path, "ready")
                        seen.ended = true
                    case .kill(let reason):
                        check(event == .timeoutPassed && reason == .readinessTimeout && !seen.ended, path, "kill")
                        seen.ended = true
                    }
                }
                if event == .began { seen.began = true }
                if seen.probing, !seen.ended, event == .probeCouldNotStart || event == .probeExited(succeeded: false) {
                    check(actions == [.scheduleProbe(after: gate.probeInterval)], path, "retry \(actions)")
                }
                if event == .probeExited(succeeded: true) { seen.probing = false }
                check((gate.state == .ready || gate.state == .timedOut) == seen.ended, path, "state \(gate.state)")
                explore(gate, seen, path)
            }
        }
        explore(Self.gate(mode), Seen(), [])
        #expect(violations.isEmpty, "\(violations)")
        #expect(sequences > 30_000)
    }
}
