import Testing

/// Every suite that runs real baton processes, workers and load nests under one
/// of two parents, each `.serialized`: the tests of a parent run one at a time,
/// and the two parents run beside each other (two tests at once, not one per
/// core per suite).
///
/// This parent holds everything but the fleet and the memory-measuring suites.
@Suite("integration (real processes)", .serialized)
struct Integration {}

/// The second serialized chain: the fleet suites (three hosts' batons, workers and
/// sshd each) and every suite that measures workers' memory (PSS against a budget,
/// a threshold, a reservation or a footprint).
///
/// They share a chain because PSS divides each shared page among every process
/// mapping it, and a fleet's processes map the same binaries and Swift libraries
/// as the workers measured: a fleet starting or stopping beside a memory test
/// moved its PSS-against-budget figures by megabytes mid-test (a held reservation
/// rolled ahead where it fitted). A test of the other chain runs one baton and a
/// few workers at a time, as the systemd suites beside both chains do.
@Suite("integration (real processes): fleet and memory", .serialized)
struct FleetAndMemory {}
