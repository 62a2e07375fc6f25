import BatonTestTraits
import Testing

/// Every suite that runs real baton processes, workers and load, except the memory group
/// and the fleet, nests under this one `.serialized` parent: its tests run one at a time,
/// on the two cores they share with baton, the workers and the load client. Like the other
/// chains, `.ownThread`: each test runs on a thread of its own, not on Swift's cooperative
/// pool (as wide as the cores), where its waits would stop the other chains.
@Suite("integration (real processes)", .serialized, .ownThread)
struct Integration {}

/// The suites that measure workers' memory (PSS against a budget, a threshold, a
/// reservation or a footprint), plus the mold adapters, the watchdog suites and the boot
/// priority suite (moved from `Integration` to even the chains out): a `.serialized` chain of its own, beside `Integration`, on
/// `PrivateBinaries` (`.privateBinaries`: `TestPaths.executable` names the copies).
///
/// PSS divides each shared page among every process mapping it. A chain of their own on
/// the build's binaries failed once (`reservationRollsWhenALeakEatsIntoIt` saw a roll-ahead
/// surge where the reservation leaves no room): the main chain's demo workers and batons,
/// started from the same build, moved the measured workers' PSS by megabytes between the
/// test's preflight and the roll's decision. On the copies, the processes these suites start
/// share no file page with the main chain's but the system libraries
/// (`privateBinariesMapNothingOfTheBuild` checks it on /proc/PID/maps). A suite added here
/// must start what it measures through `TestPaths.executable`.
@Suite("memory", .serialized, .ownThread, .privateBinaries)
struct MemoryIntegration {}

/// The fleet suites over real ssh (network namespaces, sshd, Ansible): a `.serialized`
/// chain of its own, beside `Integration`. Each test's three hosts run their batons and
/// workers, and the test its `baton` CLI calls, on `PrivateBinaries`, so no process of the
/// fleet maps a file page of the build's binaries or Swift libraries.
///
/// The `baton deploy` and `deploy commit` suites and the deploy/ansible examples (Ansible's
/// local connection against two batons here) run here too, on the build's binaries as in
/// `Integration` (the memory group runs on copies of its own, so neither chain moves the
/// PSS it measures): the test run lasts as long as its longest chain, and a suite moved
/// between chains adds no parallel load, the chains running beside each other either way.
@Suite("fleet over ssh", .serialized, .ownThread)
struct FleetIntegration {}
