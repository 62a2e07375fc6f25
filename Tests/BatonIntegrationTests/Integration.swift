import Testing

/// Every suite that runs real baton processes, workers and load, except the fleet, nests
/// under this one `.serialized` parent: its tests run one at a time, on the two cores they
/// share with baton, the workers and the load client.
///
/// The memory group stays in this chain: a split into three chains at once (main, memory,
/// fleet) failed in CI (`reservationRollsWhenALeakEatsIntoIt` saw a roll-ahead surge where
/// the reservation leaves no room). PSS divides each shared page among every process
/// mapping it, so demo workers and batons of another chain, started from the same build,
/// move the measured workers' PSS by megabytes between the test's preflight and the roll's
/// decision. Only the fleet runs beside this chain (`FleetIntegration`), because every
/// process it starts from the build runs on private copies.
@Suite("integration (real processes)", .serialized)
struct Integration {
    /// The suites that measure workers' memory (PSS against a budget, a threshold, a
    /// reservation or a footprint), plus the mold adapters, the deploy/ansible examples and
    /// the watchdog suites.
    @Suite("memory")
    struct Memory {}
}

/// The fleet suites over real ssh (network namespaces, sshd, Ansible): a `.serialized`
/// chain of its own, beside `Integration`. Each test's three hosts run their batons and
/// workers, and the test its `baton` CLI calls, on `PrivateBinaries`, so no process of this
/// chain maps a file page of the build's binaries or Swift libraries, and none moves the
/// PSS of the workers the memory group measures. A suite added here must do the same.
@Suite("fleet over ssh", .serialized)
struct FleetIntegration {}

/// The memory group (see `Integration`).
typealias MemoryIntegration = Integration.Memory
