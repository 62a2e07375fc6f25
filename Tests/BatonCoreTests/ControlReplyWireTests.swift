import BatonCore
import FoundationEssentials
import Testing

/// The reply lines as clients read them today, byte for byte: a refactor of `ControlReply`
/// must keep every kind encoding to these lines and decoding from them.
@Suite struct ControlReplyWireTests {
    static let history = HistoryEntry(
        kind: "deploy", release: "/srv/r2", previousRelease: "/srv/r1", outcome: .rolledBack, detail: "x", startedAt: 5, duration: 1,
        uid: 0)

    /// Each reply kind and its recorded line.
    static let recorded: [(ControlReply, String)] = [
        (.progress("slot 0: starting"), #"{"event":"progress","message":"slot 0: starting","v":1}"#),
        (.success("pong"), #"{"message":"pong","ok":true,"v":1}"#),
        (.success("dry run: nothing changed", details: ["a", "b"]), #"{"details":["a","b"],"message":"dry run: nothing changed","ok":true,"v":1}"#),
        (.failure("baton is stopping"), #"{"error":"baton is stopping","ok":false,"v":1}"#),
        (.failure("deploy failed", code: 4, details: ["out"]), #"{"code":4,"details":["out"],"error":"deploy failed","ok":false,"v":1}"#),
        (
            ControlReply(ok: true, history: [history]),
            #"{"history":[{"detail":"x","duration":1,"kind":"deploy","outcome":"rolled-back","previous_release":"/srv/r1","release":"/srv/r2","started_at":5,"uid":0}],"ok":true,"v":1}"#
        ),
    ]

    @Test func everyReplyKindKeepsItsLine() throws {
        for (reply, line) in Self.recorded {
            #expect(String(decoding: ControlProtocol.encodeLine(reply), as: UTF8.self) == line + "\n")
            #expect(try JSONDecoder().decode(ControlReply.self, from: Data(line.utf8)) == reply)
        }
    }
}
