import BatonCore
import Testing

/// The overlap rules of operations, first one test a rule, then every sequence
/// of up to five events checked against the invariants.
@Suite struct OperationQueueTests {
    typealias Machine = OperationQueue<Int>

    private func running() -> Machine {
        var m = Machine()
        #expect(m.startUpFinished() == [])
        #expect(m.phase == .running)
        return m
    }

    @Test func aRequestWhileIdleStartsAtOnce() {
        var m = running()
        #expect(m.request(1, kind: .deploy) == [.start(1)])
        #expect(m.phase == .deploying)
        #expect(m.finished(1) == [])
        #expect(m.phase == .running)
    }

    @Test func aDeployDuringADeployIsRefusedUnlessItWaits() {
        var m = running()
        _ = m.request(1, kind: .deploy)
        #expect(m.request(2, kind: .deploy) == [.refused(2, .deployInProgress(of: 1))])
        #expect(m.request(3, kind: .rollback) == [.refused(3, .deployInProgress(of: 1))])
        #expect(m.request(4, kind: .rollback, wait: true) == [.waiting(4, behind: .operation(.deploy))])
        #expect(m.finished(1) == [.start(4)])
        #expect(m.phase == .deploying)
    }

    @Test func aReloadQueuesBehindADeployAndJoinsAQueuedReload() {
        var m = running()
        _ = m.request(1, kind: .deploy)
        #expect(m.request(2, kind: .reload) == [.waiting(2, behind: .operation(.deploy))])
        #expect(m.request(3, kind: .reload) == [.joined(3, into: 2)])
        #expect(m.finished(1) == [.start(2)])
        #expect(m.phase == .reloading)
        // A reload during a reload: one more pass after it.
        #expect(m.request(4, kind: .reload) == [.waiting(4, behind: .operation(.reload))])
        #expect(m.request(5, kind: .reload) == [.joined(5, into: 4)])
        #expect(m.finished(2) == [.start(4)])
    }

    @Test func aDeployDuringAReloadWaitsForIt() {
        var m = running()
        _ = m.request(1, kind: .reload)
        #expect(m.request(2, kind: .deploy) == [.waiting(2, behind: .operation(.reload))])
        // A deploy waits ahead now: another one is refused.
        #expect(m.request(3, kind: .deploy) == [.refused(3, .deployInProgress(of: 2))])
        #expect(m.finished(1) == [.start(2)])
    }

    @Test func thePolicyNeverFiresDuringAnOperationOrStartUp() {
        var m = Machine()
        #expect(m.request(1, kind: .policy) == [.refused(1, .busy(.startUp))])
        _ = m.startUpFinished()
        _ = m.request(2, kind: .reload)
        #expect(m.request(3, kind: .policy) == [.refused(3, .busy(.operation(.reload)))])
        #expect(m.request(4, kind: .rollAhead) == [.refused(4, .busy(.operation(.reload)))])
        _ = m.finished(2)
        #expect(m.request(5, kind: .policy) == [.start(5)])
        #expect(m.phase == .restarting)
        #expect(m.request(6, kind: .deploy) == [.waiting(6, behind: .operation(.policy))])
    }

    @Test func requestsDuringStartUpWaitForIt() {
        var m = Machine()
        #expect(m.phase == .starting)
        #expect(m.request(1, kind: .deploy) == [.waiting(1, behind: .startUp)])
        #expect(m.request(2, kind: .deploy) == [.refused(2, .deployInProgress(of: 1))])
        #expect(m.request(3, kind: .reload) == [.waiting(3, behind: .operation(.deploy))])
        #expect(m.startUpFinished() == [.start(1)])
        #expect(m.finished(1) == [.start(3)])
    }

    @Test func aQueuedRequestWhoseDeadlinePassedExpiresTheRunningOneDoesNot() {
        var m = running()
        _ = m.request(1, kind: .deploy)
        _ = m.request(2, kind: .reload)
        _ = m.request(3, kind: .deploy, wait: true)
        #expect(m.deadlinePassed(2) == [.expired(2)])
        #expect(m.deadlinePassed(2) == [])
        #expect(m.deadlinePassed(1) == [])
        #expect(m.running?.id == 1)
        #expect(m.finished(1) == [.start(3)])
    }

    @Test func aDeployPreemptsAFailingStartUpWhichGoesOnAfterIt() {
        var m = Machine()
        #expect(m.request(1, kind: .reload) == [.waiting(1, behind: .startUp)])
        #expect(m.request(2, kind: .deploy) == [.waiting(2, behind: .operation(.reload))])
        // A slot failed: the deploy goes first, ahead of the reload.
        #expect(m.startUpFailing() == [.start(2)])
        #expect(m.phase == .deploying)
        #expect(m.request(3, kind: .policy) == [.refused(3, .busy(.operation(.deploy)))])
        // When it ends the start-up goes on; the reload waits for it.
        #expect(m.finished(2) == [])
        #expect(m.phase == .starting)
        #expect(m.startUpFinished() == [.start(1)])
    }

    @Test func onceTheStartUpFailsADeployStartsAtOnce() {
        var m = Machine()
        #expect(m.startUpFailing() == [])
        #expect(m.request(1, kind: .rollback) == [.start(1)])
        #expect(m.request(2, kind: .deploy) == [.refused(2, .deployInProgress(of: 1))])
        #expect(m.finished(1) == [])
        // A new failure is needed before the next one pre-empts again.
        #expect(m.request(3, kind: .deploy) == [.waiting(3, behind: .startUp)])
        #expect(m.startUpFailing() == [.start(3)])
    }

    @Test func stoppingRejectsEverythingAndNothingStartsAgain() {
        var m = running()
        _ = m.request(1, kind: .deploy)
        _ = m.request(2, kind: .reload)
        #expect(m.stop() == [.rejected(1), .rejected(2)])
        #expect(m.phase == .stopping)
        #expect(m.request(3, kind: .reload) == [.rejected(3)])
        #expect(m.finished(1) == [])
        #expect(m.startUpFinished() == [])
    }

    // MARK: - Every interleaving

    private enum Event: CustomStringConvertible {
        case request(OperationKind, wait: Bool)
        case startUpFinished, startUpFailing, finishRunning, deadlineOfFirstQueued, deadlineOfRunning, stop
        var description: String {
            switch self {
            case .request(let k, let w): return "\(k.rawValue)\(w ? "+wait" : "")"
            case .startUpFinished: return "start-up done"
            case .startUpFailing: return "start-up failing"
            case .finishRunning: return "finish"
            case .deadlineOfFirstQueued: return "deadline of the first queued"
            case .deadlineOfRunning: return "deadline of the running"
            case .stop: return "stop"
            }
        }
        var isStartUpFinished: Bool {
            if case .startUpFinished = self { return true }
            return false
        }
    }

    private static let alphabet: [Event] =
        [.startUpFinished, .startUpFailing, .finishRunning, .deadlineOfFirstQueued, .deadlineOfRunning, .stop]
        + OperationKind.allCases.map { .request($0, wait: false) } + [.request(.deploy, wait: true)]

    /// What happened to one request so far.
    private enum Fate: Equatable { case waiting, running, done }

    @Test func everySequenceOfFiveEventsKeepsTheInvariants() {
        var sequences = 0
        var violations: [String] = []
        // One #expect at the end: a quarter of a million paths would drown in per-step expectations.
        func check(_ ok: Bool, _ what: @autoclosure () -> String) { if !ok && violations.count < 20 { violations.append(what()) } }
        func explore(_ m: Machine, _ fates: [Int: Fate], _ kinds: [Int: OperationKind], _ path: [Event]) {
            sequences += 1
            guard path.count < 5 else { return }
            for event in Self.alphabet {
                var m = m
                var fates = fates
                var kinds = kinds
                let before = m
                let id = path.count + 1
                let actions: [Machine.Action]
                switch event {
                case .request(let kind, let wait):
                    kinds[id] = kind
                    actions = m.request(id, kind: kind, wait: wait)
                    // Exactly one answer about the new request.
                    check(actions.count == 1, "\(path + [event])")
                case .startUpFinished: actions = m.startUpFinished()
                case .startUpFailing: actions = m.startUpFailing()
                case .finishRunning:
                    guard let r = m.running else { continue }
                    fates[r.id] = .done
                    actions = m.finished(r.id)
                case .deadlineOfFirstQueued:
                    guard let q = m.queued.first else { continue }
                    actions = m.deadlinePassed(q.id)
                case .deadlineOfRunning:
                    guard let r = m.running else { continue }
                    actions = m.deadlinePassed(r.id)
                    check(actions.isEmpty, "\((path + [event]).map(\.description))")
                case .stop: actions = m.stop()
                }
                for action in actions {
                    switch action {
                    case .start(let s):
                        check(before.phase != .stopping, "\((path + [event]).map(\.description))")
                        check(fates[s] == nil || fates[s] == .waiting, "\((path + [event]).map(\.description))")
                        if kinds[s] == .policy { check(before.phase == .running, "\((path + [event]).map(\.description))") }
                        // Only a deploy or rollback starts before the start-up finished (pre-emption).
                        if before.phase == .starting && m.phase != .running {
                            check(kinds[s]?.isDeploy == true || event.isStartUpFinished, "\((path + [event]).map(\.description))")
                        }
                        fates[s] = .running
                    case .waiting(let w, _):
                        check(fates[w] == nil, "\((path + [event]).map(\.description))")
                        fates[w] = .waiting
                    case .joined(let j, let into):
                        check(kinds[j] == .reload && kinds[into] == .reload && fates[into] == .waiting, "\((path + [event]).map(\.description))")
                        fates[j] = .done
                    case .refused(let r, let why):
                        if case .deployInProgress(let of) = why {
                            check(kinds[of]?.isDeploy == true && fates[of] != .done, "\((path + [event]).map(\.description))")
                        }
                        fates[r] = .done
                    case .expired(let e):
                        check(fates[e] == .waiting, "\((path + [event]).map(\.description))")
                        fates[e] = .done
                    case .rejected(let r):
                        check(fates[r] != .done, "\((path + [event]).map(\.description))")
                        fates[r] = .done
                    }
                }
                // The machine and the fates agree: one running at most, the queue in request order.
                check(fates.values.filter { $0 == .running }.count == (m.running == nil ? 0 : 1), "\((path + [event]).map(\.description))")
                check(m.running.map { fates[$0.id] == .running } ?? true, "\((path + [event]).map(\.description))")
                check(m.queued.map(\.id) == fates.filter { $0.value == .waiting }.keys.sorted(), "\((path + [event]).map(\.description))")
                check(m.queued.filter { $0.kind == .reload }.count <= 1, "\((path + [event]).map(\.description))")
                // Idle means nothing waits; a started request never waits behind nothing.
                if m.phase == .running { check(m.queued.isEmpty, "\((path + [event]).map(\.description))") }
                if m.phase == .stopping { check(m.running == nil && m.queued.isEmpty, "\((path + [event]).map(\.description))") }
                explore(m, fates, kinds, path + [event])
            }
        }
        explore(Machine(), [:], [:], [])
        #expect(violations == [])
        #expect(sequences > 50_000)
    }
}
