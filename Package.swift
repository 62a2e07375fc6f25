// swift-tools-version:6.0
import PackageDescription

// With BATON_WMO_TESTS=1 (`make test`) every test target compiles as one whole module:
// -num-threads 1 gives each file its own object, as the index store of test discovery
// wants; -disable-batch-mode overrides SwiftPM's batch mode without a warning;
// -no-emit-module-separately-wmo spares a second job that would expand every macro again
// to emit the module. A clean build then takes less CPU and time (docs/ARCHITECTURE.md,
// "Test layers"). Without it, an edit to one test file recompiles its batch: 6 s, not 21.
let testSettings: [SwiftSetting] =
    Context.environment["BATON_WMO_TESTS"] == "1" ? [.unsafeFlags(["-wmo", "-num-threads", "1", "-disable-batch-mode", "-no-emit-module-separately-wmo"])] : []

let package = Package(
    name: "baton",
    products: [
        .executable(name: "baton", targets: ["baton"]),
        .executable(name: "baton-demo-worker", targets: ["baton-demo-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // libsystemd (sd_listen_fds_with_names, sd_notify, sd_watchdog_enabled) via pkg-config.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // What Glibc does not expose to Swift: clone/execve with LISTEN_PID, pidfd, CMSG, peer credentials.
        .target(name: "CBatonLinux"),
        // Pure logic, no I/O: config model, policies, state machines.
        .target(
            name: "BatonCore",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // Linux-facing: sockets, spawning, /proc readers, signals, sd_notify, the event loop.
        .target(
            name: "BatonSystem",
            dependencies: [
                "BatonCore", "CBatonLinux", "CSystemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // The supervisor runtime wiring core and system.
        .target(
            name: "BatonDaemon",
            dependencies: [
                "BatonCore", "BatonSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "baton",
            dependencies: [
                "BatonCore", "BatonSystem", "BatonDaemon", "CBatonLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The Swift toolchain links static executables with -export-dynamic, which puts every
            // symbol of the package's own code in the dynamic symbol table (8,700 names, 0.6 MB
            // the loader searches at start): nothing loads plugins or looks baton's symbols up by
            // name, and leaving them out saves the supervisor about 0.5 MiB of resident memory.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"])]
        ),
        .executableTarget(
            name: "baton-demo-worker",
            dependencies: ["CSystemd", "CBatonLinux"]
        ),
        // Helpers shared by the test suites: temp dirs, a bounded load client, a daemon harness.
        .target(
            name: "BatonTestSupport",
            dependencies: ["BatonCore", "BatonSystem", "CBatonLinux"],
            path: "Tests/BatonTestSupport"
        ),
        // Swift Testing traits shared by the suites (imports Testing, so apart from
        // BatonTestSupport, which baton-bench links; empty where Testing cannot be imported:
        // the release build with --static-swift-stdlib).
        .target(
            name: "BatonTestTraits",
            dependencies: ["BatonTestSupport"],
            path: "Tests/BatonTestTraits"
        ),
        .testTarget(
            name: "BatonCoreTests",
            dependencies: ["BatonCore", "BatonTestSupport"],
            swiftSettings: testSettings
        ),
        // BatonCore's memory policies and /proc parsers (Sources/BatonCore/Memory, Proc): a
        // target of their own so that neither half of BatonCore's tests compiles alone at the
        // end of a clean build (docs/ARCHITECTURE.md, "Test layers").
        .testTarget(
            name: "BatonCoreMemoryTests",
            dependencies: ["BatonCore", "BatonTestSupport"],
            swiftSettings: testSettings
        ),
        .testTarget(
            name: "BatonSystemTests",
            dependencies: ["BatonCore", "BatonSystem", "CBatonLinux", "BatonTestSupport", "BatonTestTraits"],
            swiftSettings: testSettings
        ),
        // The supervisor driven through a fake SupervisorHost and a manual clock: no process, no sleep.
        .testTarget(
            name: "BatonDaemonTests",
            dependencies: ["BatonCore", "BatonSystem", "BatonDaemon", "CBatonLinux", "BatonTestSupport"],
            swiftSettings: testSettings
        ),
        .testTarget(
            name: "BatonIntegrationTests",
            dependencies: ["BatonCore", "BatonSystem", "BatonTestSupport", "BatonTestTraits"],
            swiftSettings: testSettings
        ),
        // Real systemd (252) in a private namespace sandbox: units, socket activation, reload.
        .testTarget(
            name: "BatonSystemdTests",
            dependencies: ["BatonCore", "BatonSystem", "BatonTestSupport", "BatonTestTraits"],
            swiftSettings: testSettings
        ),
        // The benchmark harness (`make bench`): prints a table, writes JSON. Not a test.
        .executableTarget(
            name: "baton-bench",
            dependencies: ["BatonCore", "BatonSystem", "BatonTestSupport"],
            path: "Benchmarks/Sources/baton-bench"
        ),
    ],
    swiftLanguageModes: [.v6]
)
