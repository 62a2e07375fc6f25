import BatonCore
import Testing

@Suite("UpgradeHandshake")
struct UpgradeHandshakeTests {
    @Test("the answer with the nonce passes; anything else says why")
    func verdicts() {
        let nonce = UpgradeHandshake.makeNonce()
        #expect(nonce.count == 32 && nonce != UpgradeHandshake.makeNonce())
        #expect(UpgradeHandshake.refusal(output: Array(UpgradeHandshake.answer(nonce: nonce).utf8), nonce: nonce) == nil)
        let cases: [(String, String)] = [
            ("", "no handshake"),
            ("upgrade check: ok\n", "no handshake: answered"),
            ("baton-upgrade-protocol 2 ready \(nonce)\n", "speaks upgrade protocol 2"),
            ("baton-upgrade-protocol 1 ready 00\n", "nonce mismatch"),
            ("baton-upgrade-protocol 1 ready \(nonce) extra\n", "no handshake: answered"),
            (UpgradeHandshake.refusalAnswer(reason: "/s/release.json: not a release state"), "/s/release.json: not a release state"),
            ("baton-upgrade-protocol 1 refuse\n", "refused without a reason"),
        ]
        for (output, reason) in cases {
            let refusal = UpgradeHandshake.refusal(output: Array(output.utf8), nonce: nonce)
            #expect(refusal?.contains(reason) == true, "\(output): \(refusal ?? "nil")")
        }
    }

    @Test("a refusal's reason is one line that fits the answer, control characters shown as ?")
    func refusalFits() {
        let long = UpgradeHandshake.refusalAnswer(reason: String(repeating: "é", count: 600) + "\nsecond line")
        #expect(long.utf8.count <= UpgradeHandshake.maxAnswerBytes)
        #expect(long.hasSuffix("…\n") && long.filter { $0 == "\n" }.count == 1)
        let reason = UpgradeHandshake.refusal(output: Array(long.utf8), nonce: "n")
        #expect(reason?.hasPrefix("éé") == true && reason?.hasSuffix("…") == true)
        #expect(UpgradeHandshake.refusalAnswer(reason: "a\tb\u{7F}") == "baton-upgrade-protocol 1 refuse a?b?\n")
    }
}
