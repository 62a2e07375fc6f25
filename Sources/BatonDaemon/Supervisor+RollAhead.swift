import BatonCore
import BatonSystem

/// `baton preflight --roll-ahead`'s steps once it began (Supervisor+Memory.swift answers the
/// request): restart the most grown worker, measure again, and hold the reservation once the
/// need fits with its margin, or fail with the figures.
extension Supervisor {
    /// A roll-ahead refused: the verdict first. A memory audit: a deploy that fit without the
    /// margin kept free read "fits: need …; roll-ahead: cannot fit: …", exit 1.
    static func rollAheadRefusal(_ verdict: PreflightVerdict, _ plan: RollAheadPlan) -> String {
        verdict.fits ? "roll-ahead \(plan.summary); the deploy alone \(verdict.summary)" : "\(verdict.summary); roll-ahead: \(plan.summary)"
    }

    /// After each roll-ahead restart: measure again; hold the reservation once it fits with the
    /// margin and the expected growth to spare, else restart the next grown worker, until none
    /// is left (then exit 1 with the figures).
    func finishRollAhead(_ op: Operation, replaced: Bool) {
        if op.keepsReservation {
            finishReservationRoll(op, replaced: replaced)
            return
        }
        guard replaced else {
            finishOperation(op, outcome: .failed, detail: op.failure?.reason, reply: .failure("roll-ahead failed: \(op.failure?.reason ?? "?")", code: 1))
            return
        }
        op.rolledAhead += op.slots ?? []
        measureThen("the roll-ahead's next step") { [unowned self] in self.continueRollAhead(op) }
    }

    /// A roll-ahead's next step, once the workers were measured after its last restart.
    private func continueRollAhead(_ op: Operation) {
        guard operation === op, phase != .stopping else { return }
        guard let (verdict, report) = try? preflight(release: nil, need: op.need, for: op) else {
            finishOperation(op, outcome: .failed, detail: "cannot measure", reply: .failure("roll-ahead: cannot measure memory", code: 1))
            return
        }
        let count = op.rolledAhead.count
        let perRoll = (loop.now() - op.startedAt) / count
        let extra = config.memory.reservationMargin + expectedGrowth(hold: op.hold, measured: perRoll)
        let plan = RollAhead.plan(for: verdict, workers: currentGrowth(), extra: extra, exclude: Set(op.rolledAhead))
        var r = report
        r.rolledAhead = op.rolledAhead
        let after = "after restarting slot\(count == 1 ? "" : "s") \(Self.list(op.rolledAhead))"
        let line = "\(after): \(verdict.summary)"
        if plan.canFit, plan.slots.isEmpty, verdict.fits {
            holdReservation(bytes: op.need, hold: op.hold, rolledAhead: perRoll)
            r.reservation = reservationReport()
            let message = "\(line); with \(Units.formatSize(extra)) kept free beyond the need (margin + expected growth)"
            finishOperation(
                op, outcome: .succeeded, detail: nil,
                reply: .success(message, details: Self.preflightDetails(r) + [r.reservation?.line ?? ""], payload: .preflight(r)))
            return
        }
        guard plan.canFit, let next = plan.slots.first else {
            let refusal = plan.canFit ? verdict.summary : Self.rollAheadRefusal(verdict, plan)
            finishOperation(
                op, outcome: .failed, detail: refusal,
                reply: .failure("\(after): \(refusal)", code: 1, details: Self.preflightDetails(r), preflight: r))
            return
        }
        op.report(line)
        op.report("roll-ahead: still \(Units.formatSize(plan.short)) short of the need plus \(Units.formatSize(extra)) kept free: restarting slot \(next) next")
        op.slots = [next]
        let options = DeployOptions(maxSurge: 1)
        let step = firstStep(options, strategy: .auto, for: op)
        op.report("roll-ahead of slot \(next): \(Self.describe(step)) (\(step.reason))")
        var machine = RollingRestart(
            slots: [next], strategy: step.strategy, maxSurge: step.width, maxUnavailable: step.width, canary: false,
            awaitsStability: config.deploy.stabilityWindow > .zero)
        rolloutPlanner = rolloutPlanner(options, strategy: .auto)
        let actions = machine.start()
        rollout = machine
        publishStatus()
        perform(actions)
    }
}
