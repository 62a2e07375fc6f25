/// Command-line options of the demo worker.
///
/// Every flag takes `--flag VALUE` or `--flag=VALUE`. A bad flag is a `UsageError`: one line on
/// stderr and exit 2.
struct Options: Sendable, Equatable {
    /// `--release NAME`: overrides `BATON_RELEASE` and the working directory's name.
    var release: String?
    /// `--listen HOST:PORT`: only used when no socket was passed by socket activation.
    var listen: String?
    /// `--boot-delay SECONDS`: simulated framework loading before READY=1 and before accepting.
    var bootDelay: Double = 0
    /// `--fail-boot`: exit 3 after the boot delay, before READY=1.
    var failBoot = false
    /// `--never-ready`: serve, but never send READY=1.
    var neverReady = false
    /// `--crash-after-requests N`: `_exit(70)` once this process has answered N requests.
    var crashAfterRequests: Int?
    /// `--crash-after SECONDS`: `_exit(70)` that long after the worker became ready, at the
    /// first moment no request is in flight (at most 2 s later); connections accepted before
    /// end after their current answer, and no new one is accepted.
    var crashAfter: Double?
    /// `--grow-per-request BYTES`: memory allocated, touched and never freed per request.
    var growPerRequest = 0
    /// `--hold MIB`: memory allocated and touched at boot.
    var holdMiB = 0
    /// `--hold-shared PATH`: the whole file mapped `MAP_SHARED` and touched at boot (resident in
    /// every worker that maps it, stored once: benchmarks of the sampling cost use it).
    var holdShared: String?
    /// `--log-requests`: one line on stderr per answered request (an access log).
    var logRequests = false
    /// `--drain-timeout SECONDS`: hard bound on a graceful drain; past it the worker exits 1.
    var drainTimeout: Double = 25
    /// `--help`.
    var help = false
}

/// A bad command line; `message` is the whole line printed after the program name.
struct UsageError: Error, Equatable {
    /// The one-line explanation.
    let message: String
}

extension Options {
    /// Longest simulated request, in milliseconds (`/slow?ms=N` is clamped to it).
    static let maxSlowMilliseconds = 30_000

    static let usage = """
        usage: baton-demo-worker [options]

        A small HTTP/1.1 worker for baton's demo, tests and benchmarks. It serves on the
        sockets passed by systemd socket activation (LISTEN_FDS), or on --listen.

          --release NAME              release shown in responses (default: $BATON_RELEASE,
                                      else the working directory's name)
          --listen HOST:PORT          listen here when no socket was passed (manual use)
          --boot-delay SECONDS        sleep before accepting and before READY=1
          --fail-boot                 after the boot delay, exit 3 instead of becoming ready
          --never-ready               serve but never send READY=1
          --crash-after-requests N    exit 70 after answering N requests
          --crash-after SECONDS       exit 70 that long after READY=1, between requests
          --grow-per-request BYTES    leak this much memory per request (suffix K, M, G)
          --hold MIB                  allocate and touch this many MiB at boot
          --hold-shared PATH          map PATH shared and touch all of it at boot (resident
                                      in each worker, stored once)
          --log-requests              one line on stderr per answered request
          --drain-timeout SECONDS     bound on the graceful drain after SIGTERM (default 25)
          --help                      show this help

        Paths: /  /health  /slow?ms=N  /env  /fds
        Exit: 0 drained, 1 drain timed out or failed, 2 usage, 3 simulated boot failure,
              70 simulated crash.

        """

    /// Parses the arguments after the program name.
    static func parse(_ arguments: [String]) throws(UsageError) -> Options {
        var options = Options()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                throw UsageError(message: "unexpected argument '\(argument)' (see --help)")
            }
            var name = argument
            var inlineValue: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            // Reads the flag's value, inline or from the next argument.
            func value() throws(UsageError) -> String {
                if let inlineValue { return inlineValue }
                guard index < arguments.count else {
                    throw UsageError(message: "\(name) needs a value")
                }
                index += 1
                return arguments[index - 1]
            }
            func noValue() throws(UsageError) {
                if inlineValue != nil { throw UsageError(message: "\(name) takes no value") }
            }
            switch name {
            case "--help":
                try noValue()
                options.help = true
            case "--fail-boot":
                try noValue()
                options.failBoot = true
            case "--never-ready":
                try noValue()
                options.neverReady = true
            case "--log-requests":
                try noValue()
                options.logRequests = true
            case "--release":
                let release = try value()
                guard !release.isEmpty else { throw UsageError(message: "--release is empty") }
                options.release = release
            case "--listen": options.listen = try value()
            case "--boot-delay": options.bootDelay = try seconds(name, try value())
            case "--crash-after": options.crashAfter = try seconds(name, try value())
            case "--drain-timeout": options.drainTimeout = try seconds(name, try value())
            case "--crash-after-requests":
                let text = try value()
                guard let count = Int(text), count > 0 else {
                    throw UsageError(message: "\(name): '\(text)' is not a positive integer")
                }
                options.crashAfterRequests = count
            case "--hold":
                let text = try value()
                guard let mib = Int(text), mib >= 0, mib <= 1 << 30 else {
                    throw UsageError(message: "\(name): '\(text)' is not a number of MiB")
                }
                options.holdMiB = mib
            case "--hold-shared":
                let path = try value()
                guard !path.isEmpty else { throw UsageError(message: "\(name) is empty") }
                options.holdShared = path
            case "--grow-per-request":
                let text = try value()
                guard let bytes = parseSize(text) else {
                    throw UsageError(message: "\(name): '\(text)' is not a size (e.g. 4096, 64K, 1M)")
                }
                options.growPerRequest = bytes
            default:
                throw UsageError(message: "unknown option '\(name)' (see --help)")
            }
        }
        return options
    }

    /// A non-negative, finite number of seconds (fractions allowed).
    private static func seconds(_ name: String, _ text: String) throws(UsageError) -> Double {
        guard let value = Double(text), value.isFinite, value >= 0, value < 1e9 else {
            throw UsageError(message: "\(name): '\(text)' is not a number of seconds")
        }
        return value
    }

    /// Bytes with an optional 1024-based suffix: `4096`, `64K`, `64KiB`, `1M`, `2G`.
    static func parseSize(_ text: String) -> Int? {
        var digits = Substring(text)
        var multiplier = 1
        for (suffixes, factor) in [
            (["g", "gb", "gib"], 1 << 30), (["m", "mb", "mib"], 1 << 20), (["k", "kb", "kib"], 1 << 10),
        ] {
            if let suffix = suffixes.first(where: { text.lowercased().hasSuffix($0) }) {
                digits = digits.dropLast(suffix.count)
                multiplier = factor
                break
            }
        }
        guard let number = Int(digits), number >= 0 else { return nil }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : bytes
    }
}
