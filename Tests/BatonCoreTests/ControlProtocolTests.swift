import BatonCore
import BatonTestSupport
import FoundationEssentials
import Testing

private func decode(_ text: String) -> Result<ControlRequest, ControlProtocolError> {
    ControlProtocol.decodeRequest(Array(text.utf8))
}

private func failureMessage(_ result: Result<ControlRequest, ControlProtocolError>) -> String? {
    if case .failure(let error) = result { return error.message }
    return nil
}

private let malformed = #"malformed request: expected one JSON object like {"v":1,"cmd":"status"}"#

@Suite("ControlProtocol")
struct ControlProtocolTests {
    @Test(arguments: ["status", "ping", "reload", "history", "attach", "deploy", "rollback"])
    func validRequests(cmd: String) throws {
        let request = try decode(#"{"v":1,"cmd":"\#(cmd)"}"#).get()
        #expect(request == ControlRequest(cmd: cmd))
        #expect(request.v == ControlProtocol.version)
    }

    @Test func whitespaceKeyOrderAndUnknownKeysAreAccepted() throws {
        #expect(try decode(#"  { "cmd" : "status", "v" : 1 }  "#).get() == ControlRequest(cmd: "status"))
        #expect(try decode(#"{"v":1,"cmd":"ping","client":"baton 0.1"}"#).get() == ControlRequest(cmd: "ping"))
    }

    @Test func deployOptionsUseSnakeCaseKeys() throws {
        let line =
            #"{"v":1,"cmd":"deploy","deploy":{"release":"/srv/shop/releases/43","max_surge":2,"dry_run":true,"strategy":"surge","timeout":"10m","wait":true}}"#
        let request = try decode(line).get()
        #expect(request.cmd == "deploy")
        #expect(
            request.deploy
                == DeployOptions(
                    release: "/srv/shop/releases/43", strategy: "surge", maxSurge: 2, timeout: "10m", dryRun: true, wait: true))
        let encoded = String(decoding: ControlProtocol.encodeLine(request), as: UTF8.self)
        #expect(encoded.contains(#""max_surge":2"#) && encoded.contains(#""dry_run":true"#))
        #expect(try ControlProtocol.decodeRequest(Array(encoded.utf8.dropLast())).get() == request)
    }

    @Test func commandSets() {
        #expect(ControlProtocol.mutatingCommands.isDisjoint(with: ControlProtocol.readOnlyCommands))
        #expect(ControlProtocol.mutatingCommands.contains("reload"))
        #expect(ControlProtocol.readOnlyCommands.isSuperset(of: ["status", "ping"]))
    }

    @Test(arguments: [
        #"{"v":1,"cmd":"#, #"{"v":1 "cmd":"status"}"#, "[]", #""status""#, "status", "null", #"{"cmd":"status"}"#,
        #"{"v":1}"#, #"{"v":"1","cmd":"status"}"#, #"{"v":1,"cmd":7}"#, #"{"v":1.5,"cmd":"status"}"#,
        #"{"v":1,"cmd":"status"}{"v":1,"cmd":"status"}"#,
    ])
    func malformedJSON(text: String) {
        #expect(failureMessage(decode(text)) == malformed)
    }

    @Test func emptyLine() {
        #expect(failureMessage(ControlProtocol.decodeRequest([])) == malformed)
        #expect(failureMessage(decode("   ")) == malformed)
    }

    @Test func nonUTF8Bytes() {
        #expect(failureMessage(ControlProtocol.decodeRequest([0xFF, 0xFE, 0x00, 0x7B])) == malformed)
        // Invalid UTF-8 inside an otherwise well-formed request is refused too.
        var bytes = Array(#"{"v":1,"cmd":"sta"#.utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(#"tus"}"#.utf8)
        let result = ControlProtocol.decodeRequest(bytes)
        #expect(failureMessage(result) != nil)
    }

    @Test(arguments: [0, 2, 99, -1])
    func wrongVersion(v: Int) {
        #expect(
            failureMessage(decode(#"{"v":\#(v),"cmd":"status"}"#)) == "unsupported protocol version \(v) (this baton speaks 1)")
    }

    @Test(arguments: ["frobnicate", "STATUS", "", "status ", "deploy; rm -rf /"])
    func unknownCommand(cmd: String) {
        #expect(failureMessage(decode(#"{"v":1,"cmd":"\#(cmd)"}"#)) == "unknown command \"\(cmd)\"")
    }

    @Test func sizeLimit() throws {
        let request = #"{"v":1,"cmd":"status"}"#
        // Exactly at the limit (padded with JSON whitespace): accepted.
        let atLimit = Array(request.utf8) + [UInt8](repeating: 0x20, count: ControlProtocol.maxRequestBytes - request.utf8.count)
        #expect(atLimit.count == 64 * 1024)
        #expect(try ControlProtocol.decodeRequest(atLimit).get() == ControlRequest(cmd: "status"))
        // One byte more: refused before parsing.
        #expect(failureMessage(ControlProtocol.decodeRequest(atLimit + [0x20])) == "request too large (over 65536 bytes)")
        let huge = [UInt8](repeating: 0x7B, count: 10 * ControlProtocol.maxRequestBytes)
        #expect(failureMessage(ControlProtocol.decodeRequest(huge)) == "request too large (over 65536 bytes)")
    }

    @Test func everyRefusalIsOneLine() {
        let inputs: [[UInt8]] = [
            [], [0xFF], Array(#"{"v":2,"cmd":"x"}"#.utf8), Array(#"{"v":1,"cmd":"x"}"#.utf8),
            [UInt8](repeating: 0x41, count: ControlProtocol.maxRequestBytes + 1),
        ]
        for input in inputs {
            let message = failureMessage(ControlProtocol.decodeRequest(input))
            #expect(message != nil)
            #expect(message?.contains("\n") == false, "\(message ?? "")")
        }
    }

    /// The refusal quotes the peer's command; control characters in it must
    /// not break the one-line error (or the log line it becomes).
    @Test
    func unknownCommandWithControlCharactersIsOneLine() {
        let message = failureMessage(decode(#"{"v":1,"cmd":"a\nb\r\u001b[2Jc"}"#))
        #expect(message != nil)
        #expect(message?.contains(where: { $0.isNewline || $0.asciiValue.map { $0 < 0x20 } == true }) == false)
    }

    @Test func encodeLineIsOneSortedLine() {
        let line = ControlProtocol.encodeLine(ControlReply.failure("cannot bind /run/baton/shop.sock"))
        #expect(String(decoding: line, as: UTF8.self) == #"{"error":"cannot bind /run/baton/shop.sock","ok":false,"v":1}"# + "\n")
        let progress = ControlProtocol.encodeLine(ControlReply.progress("slot 0/2 ready (pid 4711)"))
        #expect(
            String(decoding: progress, as: UTF8.self) == #"{"event":"progress","message":"slot 0/2 ready (pid 4711)","v":1}"#
                + "\n")
        let success = ControlProtocol.encodeLine(ControlReply.success("reloaded"))
        #expect(String(decoding: success, as: UTF8.self) == #"{"message":"reloaded","ok":true,"v":1}"# + "\n")
        #expect(
            String(decoding: ControlProtocol.encodeLine(ControlRequest(cmd: "status")), as: UTF8.self)
                == #"{"cmd":"status","v":1}"# + "\n")
    }

    @Test func newlinesInTextAreEscaped() throws {
        let reply = ControlReply.failure("line one\nline two\r\n")
        let line = ControlProtocol.encodeLine(reply)
        #expect(line.last == 0x0A)
        #expect(line.filter { $0 == 0x0A }.count == 1)
        #expect(!line.dropLast().contains(0x0D))
        #expect(try JSONDecoder().decode(ControlReply.self, from: Data(line)) == reply)
    }

    /// A re-audit: a peer answering `{"ok": true}` made `baton deploy` print "done", exit 0.
    /// Every baton has sent `v` since its first version; a line without it is not a reply.
    @Test func aReplyLineWithoutAVersionIsNoReply() {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ControlReply.self, from: Data(#"{"ok": true}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ControlReply.self, from: Data(#"{"event": "progress", "message": "x"}"#.utf8)) }
        #expect(throws: Never.self) { try JSONDecoder().decode(ControlReply.self, from: Data(#"{"ok": true, "v": 1}"#.utf8)) }
    }

    @Test func statusReplyRoundTripsThroughOneLine() throws {
        let status = StatusReport(
            app: "shop", pid: 812, state: "running", release: "/srv/shop/releases/2024-05-01",
            listeners: ["unix:/run/shop/http.sock"],
            slots: 1, summary: "1/1 workers ready",
            workers: [WorkerStatus(slot: 0, pid: 4711, state: "ready", release: "/srv/shop/releases/2024-05-01", generation: 1)])
        let line = ControlProtocol.encodeLine(ControlReply.success(payload: .status(status)))
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.hasSuffix("}\n") && text.filter { $0 == "\n" }.count == 1)
        #expect(text.contains(#""release":"/srv/shop/releases/2024-05-01""#))
        #expect(!text.contains(#"\/"#))
        #expect(text.hasPrefix(#"{"ok":true,"status":{"app":"shop","listeners":["unix:/run/shop/http.sock"],"pid":812,"#))
        let back = try JSONDecoder().decode(ControlReply.self, from: Data(line.dropLast()))
        #expect(back == ControlReply.success(payload: .status(status)))
        // The client reads lines that still end in '\n': that decodes too.
        #expect(try JSONDecoder().decode(ControlReply.self, from: Data(line)) == back)
    }

    @Test("values that would be cut or overflow later are refused by the decoder, with the field named")
    func hardenedFields() throws {
        #expect(
            failureMessage(decode(#"{"v":1,"cmd":"preflight","preflight":{"need":"18446744073709551615B"}}"#))
                == #"invalid request: preflight.need: expected a size like "512MiB", at most 1 PiB, got "18446744073709551615B""#)
        #expect(
            failureMessage(decode(#"{"v":1,"cmd":"deploy","deploy":{"command":["/bin/sh\u0000x"]}}"#))
                == "invalid request: deploy.command contains a NUL byte")
        #expect(
            failureMessage(decode(#"{"v":1,"cmd":"deploy","deploy":{"environment":[{"name":"A","value":"x\u0000y"}]}}"#))
                == "invalid request: deploy.environment contains a NUL byte")
        #expect(
            failureMessage(decode(#"{"v":1,"cmd":"deploy","deploy":{"release":"/srv/a\u0000b"}}"#))
                == "invalid request: deploy.release contains a NUL byte")
        // Bounded by the daemon, which knows `[app] workers` and records the refusal in history.
        #expect(try decode(#"{"v":1,"cmd":"deploy","deploy":{"max_surge":-9223372036854775808}}"#).get().deploy?.maxSurge == Int.min)
        // An environment name no shell or systemd takes reached the workers' environment.
        #expect(
            failureMessage(decode(#"{"v":1,"cmd":"deploy","deploy":{"release":"/srv/r","environment":[{"name":"1A","value":"v"}]}}"#))
                == #"invalid request: deploy.environment: "1A" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"#)
        #expect(try decode(#"{"v":1,"cmd":"preflight","preflight":{"need":"1GiB"}}"#).get().preflight?.need == "1GiB")
        // A path no call can open was echoed whole in a 10,000-character error (a hostile-input audit).
        let long = "/" + String(repeating: "a", count: 10_000)
        let message = failureMessage(decode(#"{"v":1,"cmd":"deploy","deploy":{"release":"\#(long)"}}"#))
        #expect(message?.hasPrefix("invalid request: deploy.release is longer than 4095 bytes (10001): \"/aaa") == true && (message?.count ?? 0) < 200)
    }

    @Test("every input in Fuzz/crashes/control decodes to a request or one error line, never a crash")
    func replayControlCrashes() {
        let files = FuzzCorpus.files("crashes/control")
        #expect(!files.isEmpty)
        for file in files {
            let outcome = FuzzEntry.control(FuzzCorpus.bytes(file))
            #expect(!outcome.contains("\n"), "\(file): \(outcome)")
        }
    }
}

/// `DeployOptions.strategy` crosses the wire as a word and is parsed once where it comes in.
@Suite struct DeployOptionsStrategyTests {
    @Test func eachStrategyParsesAndNoneMeansTheConfigs() throws {
        #expect(try DeployOptions().parsedStrategy() == nil)
        #expect(try DeployOptions(strategy: "auto").parsedStrategy() == .auto)
        #expect(try DeployOptions(strategy: "surge").parsedStrategy() == .surge)
        #expect(try DeployOptions(strategy: "replace").parsedStrategy() == .replace)
    }

    @Test func anyOtherWordIsTheOneLineError() {
        #expect(throws: DeployOptions.InvalidStrategy(value: "blue-green")) { try DeployOptions(strategy: "blue-green").parsedStrategy() }
        #expect("\(DeployOptions.InvalidStrategy(value: "Surge"))" == #"--strategy must be auto, surge or replace, got "Surge""#)
    }
}

/// `cmd` crosses the wire as a word and is decoded into a `ControlCommand` once.
@Suite struct ControlCommandTests {
    @Test func everyVerbDecodesAndKeepsItsWord() throws {
        for command in ControlCommand.allCases {
            let request = try decode(#"{"v":1,"cmd":"\#(command.rawValue)"}"#).get()
            #expect(request.command == command && request.cmd == command.rawValue)
        }
        #expect(ControlCommand.allCases.map(\.rawValue).sorted() == (ControlProtocol.mutatingCommands.union(ControlProtocol.readOnlyCommands)).sorted())
        #expect(ControlProtocol.mutatingCommands == ["reload", "deploy", "rollback", "upgrade", "preflight", "prune-releases"])
    }

    @Test func anUnknownWordIsTheSameOneLineError() {
        #expect(failureMessage(decode(#"{"v":1,"cmd":"Status"}"#)) == #"unknown command "Status""#)
        #expect(failureMessage(decode(#"{"v":1,"cmd":"pruneReleases"}"#)) == #"unknown command "pruneReleases""#)
    }
}
