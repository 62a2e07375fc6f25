import Testing

/// Every suite that runs real baton processes, workers and load nests under one
/// of three parents, each `.serialized`: the tests of a parent run one at a time,
/// and the three parents run beside each other. Most of a test's time is spent
/// waiting (readiness, stability windows, drains, ssh), so three at once keep the
/// two cores busy where one chain left them half idle; the chains are of similar
/// length (move a suite when one grows much longer than the others).
///
/// This parent holds the suites not in `MemoryIntegration` or `FleetIntegration`.
@Suite("integration (real processes)", .serialized)
struct Integration {}

/// The chain of every suite that measures workers' memory (PSS against a budget, a
/// threshold, a reservation or a footprint), plus, to even the chains' lengths, the
/// mold adapters, the deploy/ansible examples and the watchdog suites.
///
/// PSS divides each shared page among every process mapping it, so processes that
/// map the same binaries and Swift libraries as the measured workers move their
/// figures when they start or stop: a fleet (three batons and their workers) going
/// away beside a memory test moved its PSS-against-budget figures by megabytes (a
/// held reservation rolled ahead where it fitted). The fleet therefore runs on
/// private copies (`PrivateBinaries`); a test of another chain runs one baton and a
/// few workers at a time, as the systemd suites beside every chain do.
@Suite("integration (real processes): memory", .serialized)
struct MemoryIntegration {}

/// The fleet suites over real ssh (network namespaces, sshd, Ansible): the longest
/// tests, each with three hosts' batons and workers on `PrivateBinaries`; and, to even
/// the chains' lengths, the `baton deploy` suite.
@Suite("integration (real processes): fleet over ssh", .serialized)
struct FleetIntegration {}
