import Testing

@testable import BatonCore

@Suite("KeyLineIndex")
struct ConfigKeyLineIndexTests {
    @Test func findsHeadersKeysAndDottedKeys() {
        let index = KeyLineIndex(
            """
            # comment
            top = 1
            [app]
            name = "x"   # trailing comment
              workers=8
            limits.nofile = 10
            [ app . environment ]
            RAILS_ENV = "production"
            "QUOTED KEY" = "v"
            'lit.key' = "v"
            "esc\\u0041pe" = "v"
            [[jobs]]
            every = "1h"
            """)
        #expect(index.line(for: ["top"]) == 2)
        #expect(index.line(for: ["app"]) == 3)
        #expect(index.line(for: ["app", "name"]) == 4)
        #expect(index.line(for: ["app", "workers"]) == 5)
        #expect(index.line(for: ["app", "limits"]) == 6)
        #expect(index.line(for: ["app", "limits", "nofile"]) == 6)
        #expect(index.line(for: ["app", "environment"]) == 7)
        #expect(index.line(for: ["app", "environment", "RAILS_ENV"]) == 8)
        #expect(index.line(for: ["app", "environment", "QUOTED KEY"]) == 9)
        #expect(index.line(for: ["app", "environment", "lit.key"]) == 10)
        #expect(index.line(for: ["app", "environment", "escApe"]) == 11)
        #expect(index.line(for: ["jobs"]) == 12)
        #expect(index.line(for: ["jobs", "every"]) == 13)
        // Unknown keys fall back to their nearest indexed parent.
        #expect(index.line(for: ["app", "environment", "MISSING"]) == 7)
        #expect(index.line(for: ["nothing"]) == nil)
    }

    @Test func skipsMultiLineValues() {
        let index = KeyLineIndex(
            #"""
            [app]
            command = [
              "a",   # not = a key
              "b = c",
              [1, 2],
            ]
            banner = """
            fake = "not a key"
            [not.a.table]
            ""\"
            still = "in the string" """"
            literal = '''
            x = 1
            '''
            directory = "/srv" # line 15
            env = { A = "1", B = { C = "2" } }
            when = 1979-05-27 07:32:00Z
            workers = 3
            """#)
        #expect(index.line(for: ["app", "command"]) == 2)
        #expect(index.line(for: ["app", "banner"]) == 7)
        #expect(index.order(of: ["app", "fake"]) == nil)
        #expect(index.line(for: ["not"]) == nil)
        #expect(index.line(for: ["app", "literal"]) == 12)
        #expect(index.order(of: ["app", "x"]) == nil)
        #expect(index.line(for: ["app", "directory"]) == 15)
        #expect(index.line(for: ["app", "env", "A"]) == 16)
        #expect(index.line(for: ["app", "env", "B", "C"]) == 16)
        #expect(index.line(for: ["app", "when"]) == 17)
        #expect(index.line(for: ["app", "workers"]) == 18)
        #expect(index.order(of: ["app", "env", "A"])! < index.order(of: ["app", "env", "B"])!)
    }

    @Test func byteOrderMarkAndCRLF() {
        let index = KeyLineIndex("\u{FEFF}[app]\r\nname = \"x\"\r\nworkers = 1\r\n")
        #expect(index.line(for: ["app"]) == 1)
        #expect(index.line(for: ["app", "workers"]) == 3)
    }

    @Test func suggestions() {
        #expect(ConfigReader.suggestion(for: ["app", "wrokers"]) == "app.workers")
        #expect(ConfigReader.suggestion(for: ["memroy"]) == "memory")
        #expect(ConfigReader.suggestion(for: ["deploy", "max_age"]) == "rolling.max_age")
        #expect(ConfigReader.suggestion(for: ["app", "zzzzzz"]) == nil)
        // A habits audit: a peer's names, and keys put at the top, got no suggestion.
        #expect(ConfigReader.suggestion(for: ["bind"]) == "listen.addresses")
        #expect(ConfigReader.suggestion(for: ["listen", "bind"]) == "listen.addresses")
        #expect(ConfigReader.suggestion(for: ["stop", "graceful_timeout"]) == "stop.timeout")
        #expect(ConfigReader.suggestion(for: ["max_requests"]) == "rolling.max_requests")
        #expect(ConfigReader.suggestion(for: ["workers"]) == "app.workers")
        #expect(ConfigReader.suggestion(for: ["timeout"]) == nil, "readiness, stop or deploy: not one")
        #expect(ConfigReader.editDistance("abc", "acb") == 1)
        #expect(ConfigReader.editDistance("", "abc") == 3)
        #expect(ConfigReader.editDistance("kitten", "sitting") == 3)
    }
}
