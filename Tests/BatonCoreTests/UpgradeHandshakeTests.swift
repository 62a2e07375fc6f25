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
        ]
        for (output, reason) in cases {
            let refusal = UpgradeHandshake.refusal(output: Array(output.utf8), nonce: nonce)
            #expect(refusal?.contains(reason) == true, "\(output): \(refusal ?? "nil")")
        }
    }
}
