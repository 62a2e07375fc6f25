import BatonCore
import BatonTestSupport
import BatonTestTraits
import FoundationEssentials
import Testing

/// `baton preflight --need SIZE --unit NAME` against a real systemd unit: a transient user unit
/// of the sandbox's private user manager (`scripts/systemd-preflight-driver.sh`), whose python3
/// tree touches 32 MiB in the parent and 16 MiB in a forked child.
@Suite(
    "preflight --unit on a real systemd unit (sandboxed user manager)", .serialized, .ownThread,
    .enabled(
        if: SystemdSandbox.isAvailable,
        "needs root, systemd and unshare (scripts/systemd-sandbox, or $BATON_SYSTEMD_SANDBOX)"))
struct PreflightUnitTests {
    @Test("measures a user unit's cgroup: names it, counts its processes, PSS at least what they touched; a unit not running is exit 2")
    func userUnit() throws {
        let run = try SystemdSandbox.run("unit", driver: .preflight)
        try #require(run.code == 0, "\(run.transcript)")
        let cgroup = run["cgroup"]
        try #require(cgroup.hasSuffix("/baton-preflight-probe.service"), "\(run.transcript)")

        // Text: the unit, its cgroup, both processes, and the verdict (1 MiB fits).
        #expect(run["text_rc"] == "0", "\(run.transcript)")
        #expect(
            run["text"].hasPrefix("unit baton-preflight-probe.service (cgroup \(cgroup)): 2 processes, PSS "), "\(run.transcript)")

        // JSON: the same figures, machine-readable.
        #expect(run["json_rc"] == "0", "\(run.transcript)")
        #expect(run["json_stderr"] == "", "\(run.transcript)")
        let reply = try run.json(ControlReply.self, "json")
        let report = try #require(reply.preflight, "\(run.transcript)")
        #expect(reply.ok == true && report.fits, "\(run.transcript)")
        #expect(report.workersPSSBytes >= 48 << 20, "PSS \(report.workersPSSBytes) is less than the 48 MiB the tree touched\n\(run.transcript)")
        #expect(reply.details?.first?.hasPrefix("unit baton-preflight-probe.service (cgroup \(cgroup)): 2 processes") == true, "\(run.transcript)")
        // The figures come from the unit's own memory cgroup, not the host's root.
        #expect(reply.details?.contains { $0.hasPrefix("charged to cgroup \(cgroup) ") } == true, "\(run.transcript)")

        // Stopped, or never there: one line on stderr, exit 2, nothing on stdout.
        #expect(run["stopped_rc"] == "2", "\(run.transcript)")
        #expect(run["stopped_stdout"] == "", "\(run.transcript)")
        #expect(run["stopped_stderr_lines"] == "1", "\(run.transcript)")
        #expect(run["stopped_stderr"].contains("--unit baton-preflight-probe.service: not running"), "\(run.transcript)")
        #expect(run["none_rc"] == "2", "\(run.transcript)")
        #expect(run["none_stderr_lines"] == "1", "\(run.transcript)")
        #expect(run["none_stderr"].contains("--unit baton-no-such-unit.service: not running"), "\(run.transcript)")
    }
}
