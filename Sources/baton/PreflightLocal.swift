import BatonCore
import BatonSystem
import Glibc

/// `baton preflight --need SIZE --pid PID | --unit NAME`: the same question for a host whose app
/// does not run under baton yet, answered here without a daemon: the process tree of PID, or
/// the processes of the unit's cgroup, measured from /proc (PSS/USS from smaps_rollup), and
/// the headroom of the cgroup they are charged to and of the host (`[memory]` defaults:
/// `reserve` 512 MiB). Nothing is restarted.
struct PreflightLocal {
    /// What to measure.
    enum Target {
        case pid(Int32)
        case unit(String)
    }

    let target: Target
    let need: UInt64
    let json: Bool

    func run() throws {
        let (pids, what) = try processes()
        guard let charged = pids.first else { throw BatonExit(code: BatonExitCode.usage, message: "\(what): no process to measure") }
        // A process whose smaps_rollup this user may not read (another user's) counts at its RSS,
        // which is no less than its PSS: a pid-1 audit saw `PSS 0 B` and "fits" for 44 processes
        // of other users measured as a user not root.
        var (rss, pss, uss, unreadable) = (UInt64(0), UInt64(0), UInt64(0), 0)
        for pid in pids {
            guard let m = ProcFS.memory(of: pid, detailed: true) else { continue }
            rss += m.rss
            if let p = m.pss, let u = m.uss {
                (pss, uss) = (pss + p, uss + u)
            } else {
                (pss, uss, unreadable) = (pss + m.rss, uss + m.rss, unreadable + 1)
            }
        }
        let readings: MemoryReadings
        do {
            readings = try HostMemoryReader().readings(cgroupOf: charged)
        } catch {
            throw BatonExit(code: BatonExitCode.failure, message: "preflight: cannot measure memory: \(error)\(error.hint)")
        }
        let memory = MemoryConfig()
        let headroom = Headroom(readings: readings, memory: memory, workersPSS: pss)
        let verdict = PreflightCheck.evaluate(DeployPlan(strategy: .replace, footprint: nil, tooling: need), headroom: headroom)
        let budget = EffectiveBudget.resolve(memory.budget, readings: readings)
        let report = PreflightReport(
            fits: verdict.fits, summary: verdict.summary, strategy: verdict.strategy.rawValue, needBytes: verdict.bindingNeed,
            haveBytes: verdict.binding.available, binding: verdict.binding.kind.name, budgetBytes: budget.bytes,
            budgetSource: budget.source.rawValue, workersPSSBytes: pss, footprintBytes: nil,
            limits: headroom.limits.map { PreflightReport.Limit(kind: $0.kind.name, availableBytes: $0.available) }, rolledAhead: nil)
        var details = [
            "\(what): \(pids.count) process\(pids.count == 1 ? "" : "es"), PSS \(Units.formatSize(pss)), USS \(Units.formatSize(uss)), RSS \(Units.formatSize(rss))"
        ]
        if unreadable > 0 {
            details.append(
                "PSS and USS of \(unreadable) of them unreadable (smaps_rollup of another user's process; run as root or their user): counted at their RSS"
            )
        }
        if let cgroup = readings.cgroup {
            details.append("charged to cgroup \(cgroup.path) (\(cgroup.version.rawValue)): usage \(Units.formatSize(cgroup.usage))")
        }
        for limit in headroom.limits { details.append("headroom under \(limit.kind.name): \(Units.formatSignedSize(limit.available))") }
        let reply =
            verdict.fits
            ? ControlReply.success(verdict.summary, details: details, payload: .preflight(report))
            : ControlReply.failure(verdict.summary, code: BatonExitCode.failure, details: details, preflight: report)
        if json {
            // The line the daemon would send for the same reply.
            print(String(decoding: ControlProtocol.encodeLine(reply).dropLast(), as: UTF8.self))
        } else {
            for line in details { print(line) }
        }
        guard verdict.fits else { throw BatonExit(code: BatonExitCode.failure, message: json ? nil : verdict.summary) }
        if !json { print(verdict.summary) }
    }

    /// The pids to measure (the one whose cgroup is read first) and how to name them.
    private func processes() throws -> ([Int32], String) {
        switch target {
        case .pid(let pid):
            guard pid > 0, ProcFS.read("/proc/\(pid)/statm") != nil else {
                throw BatonExit(code: BatonExitCode.usage, message: "--pid \(pid): no such process")
            }
            return (ProcFS.tree(of: pid), "process tree of pid \(pid)")
        case .unit(let name):
            guard UnitCgroup.isValidUnitName(name) else {
                throw BatonExit(code: BatonExitCode.usage, message: "--unit expects a systemd unit name, got \"\(ControlProtocol.printable(name))\"")
            }
            // The system manager first, then the caller's user manager: a user unit is unknown to
            // the system one (and there may be no system manager at all, e.g. in a container).
            // Both report the cgroup from the root of this process's cgroup namespace, and a user
            // manager's units get their own directory in the v1 memory hierarchy too.
            let query = "show -p ControlGroup --value -- '\(name)' 2>/dev/null"
            guard
                let group = UnitCgroup.controlGroup(fromSystemctl: Self.capture("systemctl " + query))
                    ?? UnitCgroup.controlGroup(fromSystemctl: Self.capture("systemctl --user " + query))
            else {
                throw BatonExit(
                    code: BatonExitCode.usage, message: "--unit \(name): not running (neither systemctl nor systemctl --user shows a ControlGroup)")
            }
            let mounts = CgroupMount.parseMountInfo(ProcFS.read("/proc/self/mountinfo") ?? "")
            var pids: [Int32] = []
            for dir in UnitCgroup.directories(controlGroup: group, mounts: mounts) where pids.isEmpty {
                pids = Self.cgroupProcs(dir, depth: 0)
            }
            guard !pids.isEmpty else { throw BatonExit(code: BatonExitCode.usage, message: "--unit \(name): no process in cgroup \(group)") }
            return (pids, "unit \(name) (cgroup \(group))")
        }
    }

    /// The pids in `dir`'s `cgroup.procs` and in its sub-cgroups' (at most 8 levels down).
    static func cgroupProcs(_ dir: String, depth: Int) -> [Int32] {
        var pids = (ProcFS.read(dir + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) }
        guard depth < 8, let handle = opendir(dir) else { return pids }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            pids += cgroupProcs(dir + "/" + name, depth: depth + 1)
        }
        return pids
    }

    /// The standard output of a shell command (bounded to 64 KiB).
    static func capture(_ command: String) -> String {
        guard let pipe = popen(command, "r") else { return "" }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65_536 {
            let n = fread(&buffer, 1, buffer.count, pipe)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        pclose(pipe)
        return String(decoding: bytes, as: UTF8.self)
    }
}
