import Testing

@testable import BatonCore

/// The path every test config pretends to come from (shared with ConfigParserErrorTests).
let testConfigPath = "/etc/baton/shop.toml"

/// The smallest valid `[app]` section (lines 1-5).
let minimalApp = """
    [app]
    name = "shop"
    command = ["bin/server"]
    directory = "/srv/shop/current"
    workers = 4

    """

/// Parses `text` as the config at `testConfigPath`.
func parseConfig(_ text: String) throws(ConfigError) -> BatonConfig {
    try BatonConfig.parse(text, path: testConfigPath)
}

/// The one-line error `text` is rejected with, or nil if it parses.
func configFailure(_ text: String) -> String? {
    do {
        _ = try parseConfig(text)
        return nil
    } catch {
        return error.description
    }
}

@Suite("BatonConfig.parse")
struct ConfigParserTests {
    @Test func fullConfigFromTheDesignSketch() throws {
        let text = """
            [app]
            name = "shop"
            command = ["bundle", "exec", "puma", "-C", "config/puma.rb"]   # argv, never a shell string
            directory = "/srv/shop/current"   # the first release
            workers = 8
            user = "shop"
            group = "shop"
            environment_file = "/etc/baton/shop.env"
            start_concurrency = 3
            runtime_directory = "/run/baton/shop"
            state_directory = "/var/lib/baton/shop"
            [app.environment]
            RAILS_ENV = "production"
            MALLOC_ARENA_MAX = "2"
            BUNDLE_GEMFILE = "/srv/shop/current/Gemfile"

            [listen]                 # only when not socket-activated (dev, demo)
            addresses = ["127.0.0.1:8080", "[::1]:8080", "unix:/run/shop/http.sock"]
            socket_mode = "0600"
            socket_group = "www-data"
            backlog = 2048

            [readiness]
            mode = "exec"
            timeout = "90s"
            delay = "3s"
            probe = ["bin/healthcheck", "--quick"]
            probe_interval = "250ms"
            probe_timeout = "1.5s"
            watchdog = "1m"

            [stop]
            signal = "SIGQUIT"
            timeout = "45s"

            [deploy]
            strategy = "surge"
            max_surge = 2
            canary = false
            worker_footprint = "300MiB"
            timeout = "20m"
            keep_releases = 10

            [memory]
            budget = "12GiB"
            reserve = "1GiB"
            threshold = "85%"
            worker_limit = "1GiB"
            check_interval = "10s"
            min_worker_age = "10min"
            smaps_every = 3

            [rolling]
            max_age = "6h"
            splay = "30m"

            [control]
            socket = "/run/baton/shop.sock"
            group = "deploy"
            read_group = "monitoring"

            [metrics]
            address = "127.0.0.1:9187"
            """
        let expected = BatonConfig(
            app: AppConfig(
                name: "shop", command: ["bundle", "exec", "puma", "-C", "config/puma.rb"],
                directory: "/srv/shop/current", workers: 8, user: "shop", group: "shop",
                environmentFile: "/etc/baton/shop.env", startConcurrency: 3,
                environment: [
                    EnvVar(name: "RAILS_ENV", value: "production"),
                    EnvVar(name: "MALLOC_ARENA_MAX", value: "2"),
                    EnvVar(name: "BUNDLE_GEMFILE", value: "/srv/shop/current/Gemfile"),
                ],
                runtimeDirectory: "/run/baton/shop", stateDirectory: "/var/lib/baton/shop"),
            listen: ListenConfig(
                addresses: [
                    .tcp(host: "127.0.0.1", port: 8080), .tcp(host: "::1", port: 8080),
                    .unix(path: "/run/shop/http.sock"),
                ],
                socketMode: 0o600, backlog: 2048, socketGroup: "www-data"),
            readiness: ReadinessConfig(
                mode: .exec, timeout: .seconds(90), delay: .seconds(3),
                probe: ["bin/healthcheck", "--quick"], probeInterval: .milliseconds(250),
                probeTimeout: .milliseconds(1500), watchdog: .seconds(60)),
            stop: StopConfig(signal: 3, signalName: "SIGQUIT", timeout: .seconds(45)),
            deploy: DeployConfig(
                strategy: .surge, maxSurge: 2, canary: false, workerFootprint: 300 << 20,
                timeout: .seconds(1200), keepReleases: 10),
            memory: MemoryConfig(
                budget: .bytes(12 << 30), reserve: 1 << 30, threshold: 0.85, workerLimit: 1 << 30,
                checkInterval: .seconds(10), minWorkerAge: .seconds(600), smapsEvery: 3),
            rolling: RollingConfig(maxAge: .seconds(6 * 3600), splay: .seconds(1800)),
            control: ControlConfig(socket: "/run/baton/shop.sock", group: "deploy", readGroup: "monitoring"),
            metrics: MetricsConfig(address: "127.0.0.1:9187"),
            sourcePath: testConfigPath)
        let config = try parseConfig(text)
        #expect(config.app == expected.app)
        #expect(config.listen == expected.listen)
        #expect(config.readiness == expected.readiness)
        #expect(config.stop == expected.stop)
        #expect(config.deploy == expected.deploy)
        #expect(config.memory == expected.memory)
        #expect(config.rolling == expected.rolling)
        #expect(config.control == expected.control)
        #expect(config.metrics == expected.metrics)
        #expect(config == expected)
    }

    @Test func everyDefault() throws {
        let config = try parseConfig(minimalApp)
        let app = AppConfig(name: "shop", command: ["bin/server"], directory: "/srv/shop/current", workers: 4)
        var expected = BatonConfig.make(app: app)
        expected.sourcePath = testConfigPath
        #expect(config == expected)

        #expect(config.app.user == nil && config.app.group == nil && config.app.environmentFile == nil)
        #expect(config.app.startConcurrency == 2)
        #expect(config.app.environment.isEmpty)
        #expect(config.app.runtimeDirectory == nil && config.app.stateDirectory == nil)
        #expect(config.listen == ListenConfig(addresses: [], socketMode: 0o660, backlog: 1024))
        #expect(config.readiness.mode == .notify)
        #expect(config.readiness.timeout == .seconds(60))
        #expect(config.readiness.delay == .seconds(2))
        #expect(config.readiness.probe.isEmpty)
        #expect(config.readiness.probeInterval == .milliseconds(500))
        #expect(config.readiness.probeTimeout == .seconds(2))
        #expect(config.readiness.watchdog == nil)
        #expect(config.readiness.stoppedTimeout == .seconds(10))
        #expect(config.stop == StopConfig(signal: 15, signalName: "SIGTERM", timeout: .seconds(30)))
        #expect(config.deploy.strategy == .auto)
        #expect(config.deploy.maxSurge == 1)
        #expect(config.deploy.canary)
        #expect(config.deploy.workerFootprint == nil && config.deploy.timeout == nil)
        #expect(config.deploy.keepReleases == 5)
        #expect(config.memory.budget == .auto)
        #expect(config.memory.reserve == 512 * 1024 * 1024)
        #expect(config.memory.threshold == 0.9)
        #expect(config.memory.workerLimit == nil)
        #expect(config.memory.checkInterval == .seconds(5))
        #expect(config.memory.minWorkerAge == .seconds(300))
        #expect(config.memory.smapsEvery == 6)
        #expect(config.rolling.maxAge == nil && config.rolling.splay == .zero)
        #expect(config.control == ControlConfig(socket: "/run/baton/shop/control.sock", group: nil, readGroup: nil))
        #expect(config.metrics.address == nil)
        #expect(BatonConfig.defaultControlSocket(appName: "api") == "/run/baton/api/control.sock")
    }

    @Test func environmentKeepsFileOrderInEveryForm() throws {
        let text =
            minimalApp + """
                environment = { ZED = "1", ALPHA = "2" }
                """
        let inline = try parseConfig(text).app.environment
        #expect(inline.map(\.name) == ["ZED", "ALPHA"])

        let dotted = try parseConfig(
            minimalApp + """
                environment.B = "x"
                environment.A = "y=z # not a comment"
                """
        ).app.environment
        #expect(dotted == [EnvVar(name: "B", value: "x"), EnvVar(name: "A", value: "y=z # not a comment")])
    }

    @Test func valueForms() throws {
        let config = try parseConfig(
            minimalApp + """
                [listen]
                addresses = [
                    "0.0.0.0:80",   # a comment inside the array
                    "/run/shop.sock",
                ]
                [stop]
                signal = "usr2"
                [memory]
                budget = "auto"
                threshold = "100%"
                [deploy]
                max_surge = 4
                [metrics]
                address = "[0:0::1]:9187"
                """)
        #expect(config.listen.addresses == [.tcp(host: "0.0.0.0", port: 80), .unix(path: "/run/shop.sock")])
        #expect(config.stop.signal == 12 && config.stop.signalName == "SIGUSR2")
        #expect(config.memory.budget == .auto && config.memory.threshold == 1.0)
        #expect(config.deploy.maxSurge == 4)
        #expect(config.metrics.address == "[::1]:9187")
    }

    @Test func stoppedTimeoutZeroTurnsTheLivenessCheckOff() throws {
        #expect(try parseConfig(minimalApp + "[readiness]\nstopped_timeout = \"0s\"\n").readiness.stoppedTimeout == nil)
        #expect(try parseConfig(minimalApp + "[readiness]\nstopped_timeout = \"3s\"\n").readiness.stoppedTimeout == .seconds(3))
        #expect(throws: ConfigError.self) { try parseConfig(minimalApp + "[readiness]\nstopped_timeout = 3\n") }
    }

    @Test func livenessProbeKeys() throws {
        let defaults = try parseConfig(minimalApp).readiness
        #expect(defaults.livenessProbe.isEmpty && defaults.livenessInterval == .seconds(10) && defaults.livenessFailures == 3)
        let readiness = try parseConfig(
            minimalApp + "[readiness]\nliveness_probe = [\"curl\", \"-f\", \"http://127.0.0.1/\"]\nliveness_interval = \"2s\"\nliveness_failures = 5\n"
        ).readiness
        #expect(readiness.livenessProbe == ["curl", "-f", "http://127.0.0.1/"])
        #expect(readiness.livenessInterval == .seconds(2) && readiness.livenessFailures == 5)
        #expect(throws: ConfigError.self) { try parseConfig(minimalApp + "[readiness]\nliveness_failures = 0\n") }
        #expect(defaults.bootNice == 0)
        #expect(try parseConfig(minimalApp + "[readiness]\nboot_nice = 10\n").readiness.bootNice == 10)
        #expect(throws: ConfigError.self) { try parseConfig(minimalApp + "[readiness]\nliveness_probe = \"curl -f x\"\n") }
    }
}
