/// Whether a new worker is ready, decided from what happened to it since it was spawned:
/// its own `READY=1` (`notify`), having stayed up for `readiness.delay` (`delay`), or a run of
/// `readiness.probe` that exited 0 (`exec`, run again `probe_interval` after each failure or
/// each run that could not start), whichever the mode asks, before `readiness.timeout`.
///
/// The supervisor feeds it the worker's events while the worker is starting and carries out
/// the actions it answers with (arm a timer, run the probe, kill the worker); it never asks
/// which state the gate is in. At most one probe run is under way at a time; once ready or
/// timed out, every later event is ignored.
public struct ReadinessGate: Sendable, Equatable {
    /// Where the worker is on its way to ready.
    public enum State: Sendable, Equatable {
        /// Not spawned yet: only ``Event/began`` counts.
        case idle
        /// Waiting; `probing`: a probe run is under way (`exec`).
        case waiting(probing: Bool)
        /// Ready.
        case ready
        /// `readiness.timeout` passed first: the worker is killed.
        case timedOut
    }

    /// What happened to the worker.
    public enum Event: Sendable, Equatable {
        /// It was spawned.
        case began
        /// `READY=1` came on its notify socket.
        case notified
        /// The delay armed at ``Action/armDelay(_:)`` passed.
        case delayPassed
        /// The time of a probe run scheduled by ``Action/scheduleProbe(after:)`` came.
        case probeDue
        /// The probe run asked for could not be spawned.
        case probeCouldNotStart
        /// The probe run exited; `succeeded`: with status 0.
        case probeExited(succeeded: Bool)
        /// The timeout armed at ``Action/armTimeout(_:)`` passed.
        case timeoutPassed
    }

    /// What the supervisor does.
    public enum Action: Sendable, Equatable {
        /// Arm the readiness timeout (then ``Event/timeoutPassed``).
        case armTimeout(Duration)
        /// Arm the delay (then ``Event/delayPassed``).
        case armDelay(Duration)
        /// Schedule a probe run (then ``Event/probeDue``).
        case scheduleProbe(after: Duration)
        /// Spawn the probe now (then ``Event/probeExited(succeeded:)`` or ``Event/probeCouldNotStart``).
        case runProbe
        /// The worker is ready.
        case ready
        /// Kill the worker: it failed to become ready, for this reason.
        case kill(RestartReason)
    }

    /// How readiness is told.
    public let mode: ReadinessMode
    /// `readiness.timeout`.
    public let timeout: Duration
    /// `readiness.delay` (`delay` mode).
    public let delay: Duration
    /// `readiness.probe_interval` (`exec` mode).
    public let probeInterval: Duration
    /// Where the worker is.
    public private(set) var state: State = .idle

    /// A gate for a worker not spawned yet.
    public init(mode: ReadinessMode, timeout: Duration, delay: Duration, probeInterval: Duration) {
        self.mode = mode
        self.timeout = timeout
        self.delay = delay
        self.probeInterval = probeInterval
    }

    /// A gate with `[readiness]`'s settings.
    public init(_ config: ReadinessConfig) {
        self.init(mode: config.mode, timeout: config.timeout, delay: config.delay, probeInterval: config.probeInterval)
    }

    /// Takes one event; returns what to do, in order.
    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.idle, .began):
            state = .waiting(probing: false)
            switch mode {
            case .notify: return [.armTimeout(timeout)]
            case .delay: return [.armTimeout(timeout), .armDelay(delay)]
            case .exec: return [.armTimeout(timeout), .scheduleProbe(after: .zero)]
            }
        case (.waiting, .notified) where mode == .notify, (.waiting, .delayPassed) where mode == .delay:
            state = .ready
            return [.ready]
        case (.waiting(probing: false), .probeDue) where mode == .exec:
            state = .waiting(probing: true)
            return [.runProbe]
        case (.waiting(probing: true), .probeCouldNotStart), (.waiting(probing: true), .probeExited(succeeded: false)):
            state = .waiting(probing: false)
            return [.scheduleProbe(after: probeInterval)]
        case (.waiting(probing: true), .probeExited(succeeded: true)):
            state = .ready
            return [.ready]
        case (.waiting, .timeoutPassed):
            state = .timedOut
            return [.kill(.readinessTimeout)]
        default:
            return []
        }
    }
}
