import Testing

/// Every suite that runs real baton processes, workers and load nests under this one
/// `.serialized` parent: its tests run one at a time, on the two cores they share with
/// baton, the workers and the load client.
///
/// The suites are grouped in two nested parents kept for a later split into chains that
/// run beside each other, which was tried and reverted: with three chains at once, a
/// memory-reservation test failed in CI (`reservationRollsWhenALeakEatsIntoIt` saw a
/// roll-ahead surge where the reservation leaves no room). PSS divides each shared page
/// among every process mapping it, so demo workers and batons of another chain, started
/// from the same build, move the measured workers' PSS by megabytes between the test's
/// preflight and the roll's decision. The fleet already runs on private copies
/// (`PrivateBinaries`); the other chain's processes would need them too.
@Suite("integration (real processes)", .serialized)
struct Integration {
    /// The suites that measure workers' memory (PSS against a budget, a threshold, a
    /// reservation or a footprint), plus the mold adapters, the deploy/ansible examples and
    /// the watchdog suites.
    @Suite("memory")
    struct Memory {}

    /// The fleet suites over real ssh (network namespaces, sshd, Ansible), each with three
    /// hosts' batons and workers on `PrivateBinaries`, and the `baton deploy` suite.
    @Suite("fleet over ssh")
    struct Fleet {}
}

/// The memory group (see `Integration`).
typealias MemoryIntegration = Integration.Memory
/// The fleet group (see `Integration`).
typealias FleetIntegration = Integration.Fleet
