import Testing

@testable import BatonCore

/// Every kind of config error, each checked as the exact one-line message with its line number.
@Suite("BatonConfig.parse errors")
struct ConfigParserErrorTests {
    @Test func syntaxErrorCarriesLineAndColumn() {
        let message = configFailure("[app]\nname = \"shop\nworkers = 1\n")
        #expect(
            message == "/etc/baton/shop.toml:2:13: Error while parsing string: unescaped control characters "
                + "other than TAB (U+0009) are explicitly prohibited")
        #expect(configFailure("[app\n")?.hasPrefix("/etc/baton/shop.toml:1:5: ") == true)
    }

    @Test func unknownKeyWithSuggestion() {
        #expect(
            configFailure(minimalApp + "wrokers = 8\n")
                == #"/etc/baton/shop.toml:6: unknown key "app.wrokers" (did you mean "app.workers"?)"#)
        #expect(
            configFailure(minimalApp + "[deploy]\nmax_age = \"6h\"\n")
                == #"/etc/baton/shop.toml:7: unknown key "deploy.max_age" (did you mean "rolling.max_age"?)"#)
        #expect(
            configFailure(minimalApp + "colour = \"blue\"\n") == #"/etc/baton/shop.toml:6: unknown key "app.colour""#)
    }

    @Test func unknownTable() {
        #expect(
            configFailure(minimalApp + "\n[readines]\nmode = \"delay\"\n")
                == #"/etc/baton/shop.toml:7: unknown table "readines" (did you mean "readiness"?)"#)
        #expect(
            configFailure(minimalApp + "[app.limits]\nnofile = 1\n")
                == #"/etc/baton/shop.toml:6: unknown table "app.limits""#
        )
        #expect(configFailure("title = \"x\"\n" + minimalApp) == #"/etc/baton/shop.toml:1: unknown key "title""#)
        // A key after `[app]` belongs to app, even when it names another section.
        #expect(configFailure(minimalApp + "stop = 3\n") == #"/etc/baton/shop.toml:6: unknown key "app.stop""#)
    }

    @Test func sectionThatIsNotATable() {
        #expect(
            configFailure("stop = \"SIGTERM\"\n" + minimalApp)
                == "/etc/baton/shop.toml:1: stop: expected a table, got a string")
    }

    @Test func wrongType() {
        // A habits audit: systemd's Environment= habit, with no word of the right form.
        #expect(
            configFailure(minimalApp + "environment = [\"RAILS_ENV=production\"]\n")
                == #"/etc/baton/shop.toml:6: app.environment: expected a table ([app.environment] with NAME = "value" lines), got an array"#)
        let text = minimalApp.replacing("workers = 4", with: "workers = \"4\"")
        #expect(configFailure(text) == "/etc/baton/shop.toml:5: app.workers: expected an integer, got a string")
        #expect(
            configFailure(minimalApp + "[deploy]\ncanary = \"yes\"\n")
                == "/etc/baton/shop.toml:7: deploy.canary: expected a boolean, got a string")
        #expect(
            configFailure(minimalApp + "[listen]\naddresses = \"127.0.0.1:80\"\n")
                == "/etc/baton/shop.toml:7: listen.addresses: expected an array of strings, got a string")
        #expect(
            configFailure(minimalApp + "[readiness]\nprobe = [\"bin/check\", 3]\n")
                == "/etc/baton/shop.toml:7: readiness.probe: expected an array of strings, got an integer at index 1")
    }

    @Test func badUnits() {
        #expect(
            configFailure(minimalApp + "[readiness]\ntimeout = 30\n")
                == #"/etc/baton/shop.toml:7: readiness.timeout: expected a duration with a unit, like "30s" or "500ms", got 30"#
        )
        #expect(
            configFailure(minimalApp + "[stop]\ntimeout = \"30\"\n")
                == #"/etc/baton/shop.toml:7: stop.timeout: expected a duration with a unit, like "30s" or "500ms", got "30""#
        )
        #expect(
            configFailure(minimalApp + "[memory]\nreserve = 536870912\n")
                == #"/etc/baton/shop.toml:7: memory.reserve: expected a size with a unit, like "512MiB", got 536870912"#
        )
        #expect(
            configFailure(minimalApp + "[memory]\nthreshold = \"90\"\n")
                == #"/etc/baton/shop.toml:7: memory.threshold: expected a percentage, like "90%", got "90""#)
        #expect(
            configFailure(minimalApp + "[memory]\nbudget = \"lots\"\n")
                == #"/etc/baton/shop.toml:7: memory.budget: expected "auto" or a size with a unit, like "4GiB", got "lots""#
        )
    }

    @Test func outOfRange() {
        let zero = minimalApp.replacing("workers = 4", with: "workers = 0")
        #expect(configFailure(zero) == "/etc/baton/shop.toml:5: app.workers: must be between 1 and 1024, got 0")
        #expect(
            configFailure(minimalApp + "[deploy]\nmax_surge = 5\n")
                == "/etc/baton/shop.toml:7: deploy.max_surge: must be between 1 and app.workers (4), got 5")
        #expect(
            configFailure(minimalApp + "[deploy]\nkeep_releases = 1\n")
                == "/etc/baton/shop.toml:7: deploy.keep_releases: must be between 2 and 10000, got 1")
        #expect(
            configFailure(minimalApp + "[memory]\nthreshold = \"0%\"\n")
                == #"/etc/baton/shop.toml:7: memory.threshold: must be greater than 0% and at most 100%, got "0%""#)
        #expect(
            configFailure(minimalApp + "[readiness]\nprobe_interval = \"0s\"\n")
                == #"/etc/baton/shop.toml:7: readiness.probe_interval: must be greater than zero, got "0s""#)
        #expect(
            configFailure(minimalApp + "start_concurrency = 0\n")
                == "/etc/baton/shop.toml:6: app.start_concurrency: must be between 1 and 1024, got 0")
    }

    /// A numeric audit: accepted, these broke what they configure. A watchdog of 1ms was never
    /// judged (a frozen worker stayed `ready`, 100 log lines a second); probe intervals of 1ns
    /// forked about 700 probes a second; an idle timeout of 1ns failed 15 of 20 `baton status`;
    /// `max_unavailable` had no upper bound (`9223372036854775807 slots at once`).
    @Test func floorsOfTimersAndWidths() {
        let cases: [(String, String)] = [
            ("[readiness]\nwatchdog = \"1ms\"\n", #"readiness.watchdog: must be at least 100ms (baton's own checks run that often), got "1ms""#),
            ("[readiness]\nprobe_interval = \"99ms\"\n", #"readiness.probe_interval: must be at least 100ms (each probe is a process), got "99ms""#),
            (
                "[readiness]\nliveness_interval = \"0.000001ms\"\n",
                #"readiness.liveness_interval: must be at least 100ms (each probe is a process), got "0.000001ms""#
            ),
            (
                "[control]\nidle_timeout = \"500ms\"\n",
                #"control.idle_timeout: must be at least 1s (a client on a busy host needs that long to send its request), got "500ms""#
            ),
            ("[deploy]\nmax_unavailable = 5\n", "deploy.max_unavailable: must be between 1 and app.workers (4), got 5"),
        ]
        for (section, message) in cases {
            #expect(configFailure(minimalApp + section) == "/etc/baton/shop.toml:7: " + message)
        }
        let floors = "[readiness]\nwatchdog = \"100ms\"\nprobe_interval = \"100ms\"\nliveness_interval = \"100ms\"\n"
        #expect(configFailure(minimalApp + floors + "[control]\nidle_timeout = \"1s\"\n[deploy]\nmax_unavailable = 4\n") == nil)
    }

    @Test func invalidValues() {
        let relative = minimalApp.replacing("\"/srv/shop/current\"", with: "\"srv/shop\"")
        #expect(
            configFailure(relative)
                == #"/etc/baton/shop.toml:4: app.directory: must be an absolute path, got "srv/shop""#)
        let badName = minimalApp.replacing("\"shop\"", with: "\"my shop\"")
        #expect(
            configFailure(badName)
                == #"/etc/baton/shop.toml:2: app.name: must be 1 to 64 characters of A-Z a-z 0-9 _ . -, and not . or .., got "my shop""#)
        // ".." was accepted: the runtime directory /run/baton/.. and the control socket
        // /run/baton/../control.sock are outside /run/baton.
        for name in [".", ".."] {
            #expect(
                configFailure(minimalApp.replacing("\"shop\"", with: "\"\(name)\""))
                    == #"/etc/baton/shop.toml:2: app.name: must be 1 to 64 characters of A-Z a-z 0-9 _ . -, and not . or .., got "\#(name)""#)
        }
        #expect(
            configFailure(minimalApp + "[readiness]\nmode = \"http\"\n")
                == #"/etc/baton/shop.toml:7: readiness.mode: must be one of "notify", "delay", "exec", got "http""#)
        #expect(
            configFailure(minimalApp + "[stop]\nsignal = \"SIGSTOP\"\n")
                == "/etc/baton/shop.toml:7: stop.signal: unknown signal \"SIGSTOP\" (expected one of SIGTERM, SIGINT, "
                + "SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGKILL)")
        #expect(
            configFailure(minimalApp + "[listen]\naddresses = [\"localhost:8080\"]\n")
                == "/etc/baton/shop.toml:7: listen.addresses: invalid address \"localhost:8080\" "
                + #"(expected "IP:PORT", "[IPv6]:PORT" or "unix:/absolute/path")"#)
        #expect(
            configFailure(minimalApp + "[listen]\naddresses = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n")
                == #"/etc/baton/shop.toml:7: listen.addresses: address "127.0.0.1:80" is listed twice"#)
        // A wildcard and an address of its family on one port: check-config passed it, serve failed
        // with "Address already in use" (an operator audit).
        #expect(
            configFailure(minimalApp + "[listen]\naddresses = [\"0.0.0.0:80\", \"127.0.0.1:80\"]\n")
                == #"/etc/baton/shop.toml:7: listen.addresses: address "127.0.0.1:80" overlaps "0.0.0.0:80" (a wildcard address takes its port on every address)"#
        )
        #expect(
            configFailure(minimalApp + "[listen]\naddresses = [\"[::1]:80\", \"[::]:80\"]\n")?.contains("overlaps") == true)
        #expect(configFailure(minimalApp + "[listen]\naddresses = [\"0.0.0.0:80\", \"[::1]:80\", \"127.0.0.1:81\"]\n") == nil)
        // A listeners audit: each of these passed check-config, then serve failed (exit 1 on
        // EINVAL or EADDRINUSE), or was told "expected IP:PORT".
        let listen = { (addresses: String) in configFailure(minimalApp + "[listen]\naddresses = [\(addresses)]\n") }
        #expect(
            listen(#""[fe80::1]:80""#)
                == #"/etc/baton/shop.toml:7: listen.addresses: cannot listen on "[fe80::1]:80": an IPv6 link-local address needs an interface (a zone such as %eth0), which [listen] cannot name: listen on [::]:80 or another address"#
        )
        #expect(listen(#""[fe80::1%lo]:80""#)?.hasSuffix("(a zone (%interface) cannot be given: an IPv6 link-local address cannot be listened on)") == true)
        #expect(
            listen(#""[::ffff:127.0.0.1]:80""#)
                == #"/etc/baton/shop.toml:7: listen.addresses: cannot listen on "[::ffff:127.0.0.1]:80": an IPv4-mapped IPv6 address: baton's IPv6 sockets are IPv6-only; write 127.0.0.1:80"#
        )
        #expect(
            listen(#""unix:/run/a.sock", "unix:/run//./a.sock""#) == #"/etc/baton/shop.toml:7: listen.addresses: address "unix:/run/a.sock" is listed twice"#)
        let long = "/run/" + String(repeating: "x", count: 110)
        #expect(listen("\"unix:\(long)\"")?.hasSuffix("(the unix socket path is 115 bytes long: at most 107 fit in a socket address)") == true)
        #expect(
            listen(#""unix:/run/d/../a.sock", "unix:/run/a.sock""#)
                == #"/etc/baton/shop.toml:7: listen.addresses: address "unix:/run/a.sock" is listed twice (as "unix:/run/d/../a.sock")"#)
        #expect(listen(#""[ff02::1]:80""#)?.hasSuffix(#"cannot listen on "[ff02::1]:80": an IPv6 multicast address: TCP cannot listen on it"#) == true)
        #expect(ListenAddress.parse("unix:/run//x/./a.sock") == .unix(path: "/run/x/a.sock"))
        #expect(ListenAddress.parse("unix:/run/x/../a.sock") == .unix(path: "/run/x/../a.sock"))
        // A names audit: check-config echoed an ESC raw (`\u001b[2J` in a key cleared the terminal).
        #expect(
            configFailure("[app]\nname = \"x\\u001b[31m\\u202e\"\ncommand = [\"a\"]\ndirectory = \"/srv\"\nworkers = 1\n")?.hasSuffix(
                #"got "x\u001B[31m\u202E""#) == true)
        // Every config error, a path or a parser's text included (a re-audit: an ESC in
        // environment_file's path, a U+202E in a TOML syntax error, reached the terminal raw).
        #expect(
            ConfigError(path: "/etc/x\u{1B}[2J", line: 3, message: "saw '\u{202E}'\tx").description == #"/etc/x\u001B[2J:3: saw '\u202E'"# + "\tx")
        // A names audit: a 200,000-byte value passed, then every start failed with "Argument list
        // too long" (Linux takes 131,071 bytes per argument or variable).
        let big = String(repeating: "v", count: 200_000)
        #expect(
            configFailure(minimalApp + "[app.environment]\nBIG = \"\(big)\"\n")
                == "/etc/baton/shop.toml:7: app.environment.BIG: BIG=… is 200004 bytes: an execve takes at most 131071 per argument or variable (Linux's MAX_ARG_STRLEN)"
        )
        #expect(
            configFailure("[app]\nname = \"shop\"\ncommand = [\"bin/server\", \"\(big)\"]\ndirectory = \"/srv/shop\"\nworkers = 1\n")?.contains(
                "app.command: element 2 is 200000 bytes: an execve takes at most 131071") == true)
        #expect(configFailure(minimalApp + "[app.environment]\nOK = \"\(String(repeating: "v", count: 131_068))\"\n") == nil)
        #expect(
            configFailure(minimalApp + "[listen]\nsocket_mode = 660\n")
                == #"/etc/baton/shop.toml:7: listen.socket_mode: expected a file mode as a string of octal digits, like "0660", got 660"#
        )
        #expect(
            configFailure(minimalApp + "[metrics]\naddress = \"unix:/run/m.sock\"\n")
                == #"/etc/baton/shop.toml:7: metrics.address: must be an IP address and port, like "127.0.0.1:9187", got "unix:/run/m.sock""#
        )
    }

    @Test func missingKey() {
        let text = """
            # shop
            [app]
            name = "shop"
            directory = "/srv/shop"
            workers = 2
            """
        #expect(configFailure(text) == "/etc/baton/shop.toml:2: app.command: required key is missing")
        #expect(configFailure("[listen]\nbacklog = 10\n") == "/etc/baton/shop.toml: app: required table is missing")
        // A misspelled required key is named where it is, with the key it stands for (a reload
        // audit: "shop.toml:1: app.workers: required key is missing" for `workres = 4`).
        let misspelled = """
            [app]
            name = "shop"
            command = ["bin/server"]
            directory = "/srv/shop"
            workres = 4
            """
        #expect(configFailure(misspelled) == #"/etc/baton/shop.toml:5: unknown key "app.workres" (did you mean "app.workers"?)"#)
    }

    @Test func commandAsAShellString() {
        let text = minimalApp.replacing(#"["bin/server"]"#, with: #""bin/server -p 80""#)
        #expect(
            configFailure(text)
                == "/etc/baton/shop.toml:3: app.command: must be an array of strings (argv), not a shell string")
        let empty = minimalApp.replacing(#"["bin/server"]"#, with: "[]")
        #expect(configFailure(empty) == "/etc/baton/shop.toml:3: app.command: must not be empty")
    }

    @Test func environmentValueNotAString() {
        #expect(
            configFailure(minimalApp + "[app.environment]\nRAILS_ENV = \"production\"\nPORT = 8080\n")
                == "/etc/baton/shop.toml:8: app.environment.PORT: expected a string, got an integer")
        #expect(
            configFailure(minimalApp + "[app.environment]\nDEBUG = true\n")
                == "/etc/baton/shop.toml:7: app.environment.DEBUG: expected a string, got a boolean")
        #expect(
            configFailure(minimalApp + "[app.environment]\nLISTEN_FDS = \"3\"\n")
                == "/etc/baton/shop.toml:7: app.environment.LISTEN_FDS: is set by baton for each worker and cannot be configured"
        )
        #expect(
            configFailure(minimalApp + "[app.environment]\n\"1BAD\" = \"x\"\n")
                == "/etc/baton/shop.toml:7: app.environment.1BAD: not a valid environment variable name "
                + "(letters, digits and _, not starting with a digit)")
    }

    @Test func execModeWithoutProbe() {
        #expect(
            configFailure(minimalApp + "[readiness]\ntimeout = \"10s\"\nmode = \"exec\"\n")
                == #"/etc/baton/shop.toml:8: readiness.probe: required (non-empty) when readiness.mode is "exec""#)
        #expect(
            configFailure(minimalApp + "[readiness]\nmode = \"exec\"\nprobe = []\n")
                == #"/etc/baton/shop.toml:8: readiness.probe: required (non-empty) when readiness.mode is "exec""#)
    }

    @Test func firstErrorInFileOrder() {
        let text =
            minimalApp + """
                [stop]
                timeout = "forever"
                [deploy]
                nonsense = 1
                """
        // The app section is read first, but the earliest problem in the file wins.
        let broken = text.replacing("workers = 4", with: "workers = 4\nusr = \"shop\"")
        #expect(configFailure(broken) == #"/etc/baton/shop.toml:6: unknown key "app.usr" (did you mean "app.user"?)"#)
        #expect(configFailure(text)?.hasPrefix("/etc/baton/shop.toml:7: stop.timeout: ") == true)
    }

    @Test func configErrorDescription() {
        #expect(ConfigError(path: "a.toml", line: 3, column: 7, message: "bad").description == "a.toml:3:7: bad")
        #expect(ConfigError(path: "a.toml", key: "app.name", message: "bad").description == "a.toml: app.name: bad")
        #expect(ConfigError(path: "", key: "app.name", message: "bad").description == "app.name: bad")
        #expect(ConfigError(path: "a.env", line: 2, message: "bad").description == "a.env:2: bad")
    }
}
