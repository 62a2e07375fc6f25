import Testing

@testable import BatonCore

/// Config input that used to be accepted silently or to trap: each case is a measured defect
/// and must now be one clear error naming the key (or what is wrong) and the line.
@Suite("BatonConfig.parse hardening")
struct ConfigHardeningTests {
    /// A re-audit: `runtime_directory` of 86 and 92 bytes passed `check-config`, then every start
    /// failed binding its notify socket ("File name too long"); one of 84 bytes failed at the 10th
    /// deploy, when the generation in the socket's name grew a digit.
    @Test("a runtime directory with no room for the notify sockets' paths is refused")
    func runtimeDirectoryLength() {
        let longest = "/" + String(repeating: "r", count: WorkerContract.maxRuntimeDirectoryLength - 1)
        let text = { (dir: String) in minimalApp.replacing("workers = 4", with: "workers = 4\nruntime_directory = \"\(dir)\"") }
        #expect(configFailure(text(longest)) == nil)
        #expect(
            configFailure(text(longest + "r"))?.hasSuffix(
                "app.runtime_directory: must be at most 75 bytes long (workers' notify sockets are bound in its notify folder, and a unix socket path is at most 107 bytes)"
            ) == true)
        // The longest name it leaves room for: slot 1023, generation 36^7 - 1, pid 36^5 - 1.
        let name = WorkerContract.notifySocketName(slot: 1023, generation: 78_364_164_095, batonPID: 60_466_175)
        #expect((longest + "/notify/" + name).utf8.count == ListenAddress.maxUnixPathLength)
    }

    @Test("a NUL byte is an error naming its line, not the silent end of the file")
    func nulByte() {
        let text = minimalApp + "\u{0}[deploy]\nmax_surge = \"not a number\"\n"
        #expect(configFailure(text) == "/etc/baton/shop.toml:6: contains a NUL byte (a config is text)")
    }

    /// `A = "a\u0000b"` was accepted and the worker got `A=a`: the parser hands strings over cut
    /// at a NUL. The escape is refused with its line; in a comment, or after an escaped
    /// backslash, it is text.
    @Test("a \\u0000 escape is refused with its line; in a comment or as \\\\u0000 it is text")
    func nulEscape() {
        #expect(
            configFailure(minimalApp + "[app.environment]\nA = \"a\\u0000b\"\n")
                == #"/etc/baton/shop.toml:7: contains the escape "\u0000" (a NUL character), which no path, argument or environment value can hold"#)
        #expect(configFailure(minimalApp + "[app.environment]\nA = \"\\U00000000\"\n")?.hasPrefix("/etc/baton/shop.toml:7: contains the escape") == true)
        #expect(configFailure(minimalApp + "# not \\u0000 a value\n[app.environment]\nA = \"a\\\\u0000b\"\n") == nil)
        // A comment after a value, and a literal string, have no escapes; a multi-line basic
        // string does, on a line that starts with "#" too, and after a line-ending backslash.
        let notEscapes =
            minimalApp + #"""
                [app.environment]
                A = "v" # see \u0000
                B = 'C:\u0000'
                C = '''x
                \u0000'''

                """#
        #expect(configFailure(notEscapes) == nil)
        let inMultiline =
            minimalApp + #"""
                [app.environment]
                A = """
                # \u0000
                z"""

                """#
        #expect(configFailure(inMultiline)?.hasPrefix("/etc/baton/shop.toml:8: contains the escape") == true)
        let afterLineEnd =
            minimalApp + #"""
                [app.environment]
                A = """a \
                  \u0000"""

                """#
        #expect(configFailure(afterLineEnd)?.hasPrefix("/etc/baton/shop.toml:8: contains the escape") == true)
    }

    /// Invalid UTF-8 was decoded into U+FFFD and accepted (a worker's argument or environment
    /// value changed without a word).
    @Test("bytes that are not UTF-8 are refused before decoding, with their line")
    func invalidUTF8() throws {
        let bytes = Array((minimalApp + "[app.environment]\nA = \"").utf8) + [0xFF, 0xFE] + Array("\"\n".utf8)
        #expect(throws: ConfigError(path: "shop.toml", line: 7, message: "is not valid UTF-8 text")) {
            try ConfigPrecheck.decode(bytes, path: "shop.toml")
        }
        #expect(try ConfigPrecheck.decode(Array(minimalApp.utf8), path: "shop.toml") == minimalApp)
    }

    @Test("sizes past 1 PiB are refused at parse time with the key and line (no overflow later)")
    func absurdSize() {
        let text = minimalApp + "[deploy]\nmax_surge = 2\nworker_footprint = \"9223372036854775808B\"\n"
        #expect(
            configFailure(text)
                == #"/etc/baton/shop.toml:8: deploy.worker_footprint: must be at most 1 PiB, got "9223372036854775808B""#)
        #expect(configFailure(minimalApp + "[memory]\nreserve = \"16EiB\"\n")?.contains("memory.reserve") == true)
        #expect(configFailure(minimalApp + "[memory]\nbudget = \"2048TiB\"\n")?.contains("must be at most 1 PiB") == true)
        #expect(configFailure(minimalApp + "[memory]\nbudget = \"1024TiB\"\n") == nil)
        #expect(Units.parseBoundedSize("18446744073709551615B") == nil)
        #expect(Units.parseBoundedSize("1024TiB") == 1 << 50)
    }

    @Test("an unknown key is echoed cut to 64 characters, and a huge one gets no suggestion")
    func hugeUnknownKey() {
        let key = String(repeating: "k", count: 400_000)
        let message = configFailure(minimalApp + key + " = 1\n")
        #expect(message == #"/etc/baton/shop.toml:6: unknown key "app."# + String(repeating: "k", count: 60) + #"…""#)
        #expect(ConfigReader.suggestion(for: ["app", key]) == nil)
        #expect(ConfigReader.suggestion(for: ["app", "wrokers"]) == "app.workers")
    }

    @Test("the metrics endpoint on a listen address is refused with the key and line")
    func metricsOnListenAddress() {
        let text = minimalApp + "[listen]\naddresses = [\"127.0.0.1:8080\"]\n[metrics]\naddress = \"127.0.0.1:8080\"\n"
        #expect(
            configFailure(text)
                == #"/etc/baton/shop.toml:9: metrics.address: must differ from the listen address "127.0.0.1:8080""#)
        let wildcard = minimalApp + "[listen]\naddresses = [\"0.0.0.0:8080\"]\n[metrics]\naddress = \"127.0.0.1:8080\"\n"
        #expect(configFailure(wildcard)?.contains("must differ from the listen address \"0.0.0.0:8080\"") == true)
        let other = minimalApp + "[listen]\naddresses = [\"127.0.0.1:8080\"]\n[metrics]\naddress = \"127.0.0.1:9187\"\n"
        #expect(configFailure(other) == nil)
    }

    @Test("the key scanner survives deep nesting and stops instead of recursing without end")
    func deepNesting() {
        let text = "a = " + String(repeating: "[", count: 100_000) + "\n"
        _ = KeyLineIndex(text)
        #expect(ConfigPrecheck.check(Array(text.utf8), path: "x.toml") == nil)
    }
}
