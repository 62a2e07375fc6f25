import BatonCore
import BatonSystem
import Testing

/// `[app] user` by name or, as systemd's `User=` takes it, by number (a re-audit: `user =
/// "999"` was refused as an unknown user).
@Suite struct AccountsTests {
    @Test func aNumericUserIsTheUserOfThatUID() throws {
        let byNumber = try Accounts.credentials(user: "65534", group: nil)
        let byName = try Accounts.credentials(user: "nobody", group: nil)
        #expect(byNumber == byName)
        #expect(byNumber.account.contains(EnvVar(name: "USER", value: "nobody")))
    }

    @Test func aNumericUserWithoutAnEntryRunsAsThatNumber() throws {
        let loose = try Accounts.credentials(user: "3999999", group: nil)
        #expect(loose.uid == 3_999_999 && loose.gid == 3_999_999 && loose.groups == [3_999_999] && loose.account.isEmpty)
        #expect(try Accounts.credentials(user: "3999999", group: "0").gid == 0)
        #expect(throws: SpawnError.self) { try Accounts.credentials(user: "no-such-user-here", group: nil) }
    }

    /// A re-audit: `socket_group = "4294967295"` passed and left the socket root's (chown takes
    /// (gid_t)-1 as "unchanged"); `user = "4294967295"` would have left a worker baton's uid
    /// (setresuid likewise). Refused, with 65535, as systemd refuses them.
    @Test func theIDsThatMeanNoneAreRefused() {
        for id in ["4294967295", "65535"] {
            #expect(throws: SpawnError.self) { try Accounts.credentials(user: id, group: nil) }
            #expect(throws: SpawnError.self) { try Accounts.groupID(id) }
            #expect(throws: SpawnError.self) { try Accounts.credentials(user: "nobody", group: id) }
        }
        #expect((try? Accounts.groupID("65534")) == 65534)
        // Digits only (a re-audit: "+0" and "-0" were taken for root).
        for text in ["+0", "-0", "+65534"] {
            #expect(throws: SpawnError.self) { try Accounts.credentials(user: text, group: nil) }
            #expect(throws: SpawnError.self) { try Accounts.groupID(text) }
        }
    }
}
