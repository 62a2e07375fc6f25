import Testing

/// Every suite that runs real baton processes, workers and load nests here:
/// `.serialized` on the parent runs all of them one test at a time, so two
/// load tests never share the two cores. The fleet suites stay in this chain
/// too: run beside it (a second serialized parent) they cut `swift test` by a
/// third, but their hosts' batons and workers map the same binaries and Swift
/// libraries as the workers here, and PSS divides each shared page among every
/// process mapping it, so a fleet starting or stopping moved the memory suites'
/// PSS-against-budget figures by megabytes mid-test (a held reservation rolled
/// ahead where it fitted); making those suites wait for each fleet test gave
/// the time back.
@Suite("integration (real processes)", .serialized)
struct Integration {}
