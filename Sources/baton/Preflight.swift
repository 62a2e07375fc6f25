import ArgumentParser
import BatonCore
import BatonSystem
import FoundationEssentials
import Glibc

struct Preflight: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check that the next deploy fits in memory: one verdict with the figures and the limit that binds.",
        discussion: """
            Exit 0: it fits. 1: it does not (with --roll-ahead: not even after restarting the most bloated workers). \
            With --roll-ahead, workers with the largest memory growth since boot are replaced one at a time, \
            zero downtime, until the plan fits with [memory] reservation_margin and the expected growth to spare; \
            the daemon then keeps --need free until a deploy starts, --release-reservation, or --hold passes. \
            --pid / --unit measure a process tree or a systemd unit not run by baton, without a daemon.
            """)

    // Optional: --pid and --unit need no daemon, so "say which daemon" is checked only
    // without them (see validate()).
    @OptionGroup var daemon: DaemonLocationOptional

    @Option(help: "The release about to be deployed.")
    var release: String?

    // .unconditional: "-1B" is this option's (refused) value, not an unknown flag.
    @Option(parsing: .unconditional, help: "Memory the CI's own tooling needs on the host, e.g. 512MiB.")
    var need: String?

    @Flag(help: "Restart the most bloated workers (zero downtime) until the deploy fits.")
    var rollAhead = false

    @Option(parsing: .unconditional, help: "With --roll-ahead: keep --need free this long, unless a deploy starts first (default 15m, at most 2h).")
    var hold: String?

    @Flag(help: "Release the memory reservation a --roll-ahead left held.")
    var releaseReservation = false

    @Option(help: "Measure this process tree instead of a baton daemon's workers (no roll-ahead).")
    var pid: Int32?

    @Option(help: "Measure this systemd unit's cgroup instead of a baton daemon's workers (no roll-ahead).")
    var unit: String?

    @Flag(help: "One JSON object per line.")
    var json = false

    func validate() throws {
        if let need, Units.parseBoundedSize(need) == nil {
            throw ValidationError("--need expects a size like \"512MiB\", at most 1 PiB, got \"\(ControlProtocol.printable(need))\"")
        }
        if let hold {
            guard let d = Units.parseDuration(hold), d > .zero, d <= Reservation.maximumHold else {
                throw ValidationError("--hold expects a duration like \"15m\", more than 0 and at most 2h, got \"\(ControlProtocol.printable(hold))\"")
            }
            guard rollAhead else { throw ValidationError("--hold needs --roll-ahead (only a roll-ahead holds a reservation)") }
        }
        if pid != nil && unit != nil { throw ValidationError("--pid and --unit: give one of them") }
        if pid == nil && unit == nil { _ = try daemon.resolved() }
        if pid != nil || unit != nil {
            if rollAhead || releaseReservation || release != nil {
                throw ValidationError("--pid and --unit measure processes baton does not run: no --roll-ahead, --release-reservation or --release")
            }
            // They ask no daemon: a daemon named beside them was ignored without a word.
            if daemon.app != nil || daemon.config != nil || daemon.socket != nil {
                throw ValidationError("--pid and --unit ask no daemon: no --app, --config or --socket")
            }
        }
        if releaseReservation && (rollAhead || need != nil) {
            throw ValidationError("--release-reservation takes no --need or --roll-ahead")
        }
    }

    func run() throws {
        if let pid {
            return try PreflightLocal(target: .pid(pid), need: need.flatMap(Units.parseBoundedSize) ?? 0, json: json).run()
        }
        if let unit {
            return try PreflightLocal(target: .unit(unit), need: need.flatMap(Units.parseBoundedSize) ?? 0, json: json).run()
        }
        var client = try ControlClient(try daemon.resolved().endpoint(), timeout: nil)
        defer { client.close() }
        let options = PreflightOptions(
            release: release, need: need, rollAhead: rollAhead ? true : nil, hold: hold, releaseReservation: releaseReservation ? true : nil)
        try client.send(ControlRequest(cmd: "preflight", preflight: options))
        try followOperation(&client, json: json)
    }
}
