import Testing

/// Every suite that runs real baton processes, workers and load nests here:
/// `.serialized` on the parent runs all of them one test at a time, so two
/// load tests never share the two cores.
@Suite("integration (real processes)", .serialized)
struct Integration {}
