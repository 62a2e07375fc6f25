import BatonTestTraits
import Testing

/// Every suite that runs real baton processes, workers and load, except the memory group,
/// the fleet and the second and third chains, nests under this one `.serialized` parent: its
/// tests run one at a time, on the two cores they share with baton, the workers and the load
/// client. The deploy/ansible examples (Ansible's local connection against two batons here)
/// run here too, moved from the fleet chain to even the chains out.
/// Like the other chains, `.ownThread`: each test runs on a thread of its own, not on Swift's cooperative
/// pool (as wide as the cores), where its waits would stop the other chains.
@Suite("integration (real processes)", .serialized, .ownThread)
struct Integration {}

/// The suites that measure workers' memory (PSS against a budget, a threshold, a
/// reservation or a footprint), plus the mold adapters (moved from `Integration` to even
/// the chains out): a `.serialized` chain of its own, beside `Integration`, on
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
@Suite("fleet over ssh", .serialized, .ownThread)
struct FleetIntegration {}

/// A fourth chain, on the build's binaries, of suites taken from the other three: the
/// boot priority suite (from the memory chain), mold mode, the control
/// socket limits, bad input and the Python worker drain (from `Integration`, the last two
/// when baton-deploy's tests grew it to 105 s against 77 s here), `baton deploy` and `deploy commit` (from the fleet
/// chain). The test phase lasts as long as its longest chain: with three chains of
/// 103-110 s, the cores were idle a quarter of the time (perf), and with this one the
/// longest is 86-96 s (the phase 91-96 s against 110 s, the same tree back to back).
@Suite("integration, second chain", .serialized, .ownThread)
struct SecondIntegration {}

/// A fifth chain, on the build's binaries: deploy/baton-deploy and bounded I/O (from
/// `Integration`), the watchdog (from the second chain) and `baton upgrade` (from the memory
/// chain). With four chains the longest, `Integration`, ran 112 s alone for its last 15–20 s
/// while the cores were 75–94 % idle (perf, sampling every CPU); the others ended at 93–100 s.
@Suite("integration, third chain", .serialized, .ownThread)
struct ThirdIntegration {}
