import BatonCore
import Testing

private func vars(_ pairs: KeyValuePairs<String, String>) -> [EnvVar] {
    pairs.map { EnvVar(name: $0.key, value: $0.value) }
}

/// What systemd gives baton's own process (socket-activated, Type=notify, watchdog on).
private let systemdEnvironment = [
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "NOTIFY_SOCKET=/run/systemd/notify",
    "HOME=/var/lib/shop",
    "WATCHDOG_USEC=30000000",
    "WATCHDOG_PID=812",
    "LISTEN_PID=812",
    "LISTEN_FDS=1",
    "LISTEN_FDNAMES=baton@shop.socket",
    "LANG=C.UTF-8",
    "SYSTEMD_EXEC_PID=812",
    "MANAGERPID=1",
    "JOURNAL_STREAM=8:23117",
    "INVOCATION_ID=4c1b2f7e3a8d4c0e9b6a5d2f1e0c9b8a",
    "CREDENTIALS_DIRECTORY=/run/credentials/baton@shop.service",
    "USER=shop",
]

@Suite("WorkerEnvironment")
struct WorkerEnvironmentTests {
    @Test func stripsSystemdVariablesAndKeepsTheRestInOrder() {
        let env = WorkerEnvironment.build(
            inherited: systemdEnvironment, fileVariables: [], configVariables: [], listenerNames: [], notifySocket: nil)
        #expect(env == ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var/lib/shop", "LANG=C.UTF-8", "USER=shop"])
    }

    /// A releases audit: workers inherited baton's PWD and OLDPWD (where baton was started).
    @Test func pwdIsTheFolderItStartsInAndOldpwdIsGone() {
        let env = WorkerEnvironment.build(
            inherited: ["PWD=/root", "A=1", "OLDPWD=/work"], fileVariables: [], configVariables: [EnvVar(name: "OLDPWD", value: "/x")],
            listenerNames: [], notifySocket: nil, directory: "/srv/app/releases/r4")
        #expect(env == ["PWD=/srv/app/releases/r4", "A=1"])
        // No `.` or `..` (POSIX): the folder then; else the path as named, `//` and a trailing `/` out.
        #expect(WorkerEnvironment.pwd("/srv/app/releases/P/../O/", resolve: { _ in "/srv/app/releases/O" }) == "/srv/app/releases/O")
        #expect(WorkerEnvironment.pwd("/srv/app/./current", resolve: { _ in "/srv/app/releases/7" }) == "/srv/app/releases/7")
        #expect(WorkerEnvironment.pwd("/srv//app/current/", resolve: { _ in "x" }) == "/srv/app/current")
    }

    @Test(arguments: [
        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
        "SYSTEMD_EXEC_PID", "MANAGERPID", "JOURNAL_STREAM", "INVOCATION_ID", "CREDENTIALS_DIRECTORY",
    ])
    func stripped(name: String) {
        #expect(WorkerEnvironment.isStripped(name))
        let env = WorkerEnvironment.build(
            inherited: ["A=1", "\(name)=x", "B=2"], fileVariables: [], configVariables: [], listenerNames: [],
            notifySocket: nil)
        #expect(env == ["A=1", "B=2"])
    }

    @Test(arguments: ["PATH", "HOME", "LANG", "TZ", "LISTENER", "MY_NOTIFY_SOCKET", "XLISTEN_FDS", "WATCHDOG", "RAILS_ENV"])
    func kept(name: String) {
        #expect(!WorkerEnvironment.isStripped(name))
        let env = WorkerEnvironment.build(
            inherited: ["\(name)=v"], fileVariables: [], configVariables: [], listenerNames: [], notifySocket: nil)
        #expect(env == ["\(name)=v"])
    }

    @Test func laterSourcesWinAndKeepTheFirstPosition() {
        let env = WorkerEnvironment.build(
            inherited: ["PATH=/bin", "RAILS_ENV=development", "HOME=/root"],
            fileVariables: vars(["SECRET_KEY_BASE": "from-file", "RAILS_ENV": "staging", "DB": "file-db"]),
            configVariables: vars(["RAILS_ENV": "production", "DB": "config-db", "WEB_CONCURRENCY": "1"]),
            listenerNames: [], notifySocket: nil)
        #expect(
            env == [
                "PATH=/bin", "RAILS_ENV=production", "HOME=/root", "SECRET_KEY_BASE=from-file", "DB=config-db",
                "WEB_CONCURRENCY=1",
            ])
    }

    @Test func extraOverridesConfig() {
        let env = WorkerEnvironment.build(
            inherited: [], fileVariables: [], configVariables: vars(["BATON_WORKER_SLOT": "9", "X": "1"]),
            listenerNames: [], notifySocket: nil, extra: vars(["BATON_WORKER_SLOT": "2"]))
        #expect(env == ["BATON_WORKER_SLOT=2", "X=1"])
    }

    @Test func protocolVariablesComeLastAndCannotBeOverridden() {
        let env = WorkerEnvironment.build(
            inherited: systemdEnvironment,
            fileVariables: vars(["LISTEN_FDS": "7", "NOTIFY_SOCKET": "/tmp/evil"]),
            configVariables: vars([
                "LISTEN_FDS": "9", "LISTEN_PID": "1", "LISTEN_FDNAMES": "x", "NOTIFY_SOCKET": "/evil",
                "WATCHDOG_USEC": "1", "APP": "shop",
            ]),
            listenerNames: ["http", "admin"], notifySocket: "/run/baton/shop/notify/w3.sock",
            extra: vars(["LISTEN_FDS": "5"]))
        #expect(
            env == [
                "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var/lib/shop", "LANG=C.UTF-8", "USER=shop", "APP=shop",
                "LISTEN_FDS=2", "LISTEN_FDNAMES=http:admin", "NOTIFY_SOCKET=/run/baton/shop/notify/w3.sock",
            ])
    }

    @Test func listenVariablesOnlyWithListeners() {
        let none = WorkerEnvironment.build(
            inherited: ["A=1"], fileVariables: [], configVariables: [], listenerNames: [], notifySocket: "/run/n.sock")
        #expect(none == ["A=1", "NOTIFY_SOCKET=/run/n.sock"])
        let one = WorkerEnvironment.build(
            inherited: ["A=1"], fileVariables: [], configVariables: [], listenerNames: ["127.0.0.1_8080"], notifySocket: nil)
        #expect(one == ["A=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=127.0.0.1_8080"])
    }

    @Test func listenPIDIsNeverIncluded() {
        let env = WorkerEnvironment.build(
            inherited: ["LISTEN_PID=1"], fileVariables: vars(["LISTEN_PID": "2"]), configVariables: vars(["LISTEN_PID": "3"]),
            listenerNames: ["http"], notifySocket: nil)
        #expect(!env.contains { $0.hasPrefix("LISTEN_PID=") })
        #expect(env == ["LISTEN_FDS=1", "LISTEN_FDNAMES=http"])
    }

    @Test func oddInheritedEntries() {
        let env = WorkerEnvironment.build(
            inherited: ["NOEQUALS", "A=b=c", "EMPTY=", "A=second", "B=1"], fileVariables: [], configVariables: [],
            listenerNames: [], notifySocket: nil)
        #expect(env == ["A=second", "EMPTY=", "B=1"])
    }

    @Test func stableAcrossCalls() {
        func build() -> [String] {
            WorkerEnvironment.build(
                inherited: systemdEnvironment, fileVariables: vars(["Z": "1", "A": "2", "M": "3"]),
                configVariables: vars(["Q": "4", "B": "5"]), listenerNames: ["a", "b", "c"], notifySocket: "/n")
        }
        let first = build()
        for _ in 0..<20 { #expect(build() == first) }
        #expect(first.suffix(3) == ["LISTEN_FDS=3", "LISTEN_FDNAMES=a:b:c", "NOTIFY_SOCKET=/n"])
        #expect(first.map { String($0.prefix { $0 != "=" }) }.prefix(7) == ["PATH", "HOME", "LANG", "USER", "Z", "A", "M"])
    }

    @Test func batonEnvironmentInputIsNotModified() {
        let inherited = systemdEnvironment
        _ = WorkerEnvironment.build(
            inherited: inherited, fileVariables: [], configVariables: [], listenerNames: ["x"], notifySocket: "/n")
        #expect(inherited == systemdEnvironment)
        #expect(inherited.contains("NOTIFY_SOCKET=/run/systemd/notify"))
    }

    @Test func theWorkerWatchdogIsItsOwnNotBatons() {
        // baton's own WATCHDOG_USEC (systemd's, for baton) never passes; the worker's own does.
        let env = WorkerEnvironment.build(
            inherited: systemdEnvironment, fileVariables: [], configVariables: vars(["WATCHDOG_USEC": "1"]), listenerNames: [],
            notifySocket: "/n", watchdog: .milliseconds(1500))
        #expect(env.filter { $0.hasPrefix("WATCHDOG_") } == ["WATCHDOG_USEC=1500000"])
        #expect(env.last == "WATCHDOG_USEC=1500000")
        #expect(WorkerEnvironment.microseconds(.seconds(5)) == 5_000_000)
        #expect(WorkerEnvironment.microseconds(.nanoseconds(10)) == 1)
    }
}
