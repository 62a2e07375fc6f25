import Testing

@testable import BatonCore

/// `[control] idle_timeout`: how long a control client may stay silent or stop reading.
@Suite("[control] idle_timeout")
struct ControlConfigTests {
    @Test func defaultsToTenSecondsAndReadsADuration() throws {
        #expect(try parseConfig(minimalApp).control.idleTimeout == .seconds(10))
        let set = try parseConfig(minimalApp + "[control]\nidle_timeout = \"1500ms\"\n")
        #expect(set.control.idleTimeout == .milliseconds(1500))
    }

    @Test func zeroOrNoUnitIsAnErrorNamingTheKeyAndLine() {
        let zero = configFailure(minimalApp + "[control]\nidle_timeout = \"0s\"\n")
        #expect(zero == #"/etc/baton/shop.toml:7: control.idle_timeout: must be greater than zero, got "0s""#)
        let bare = configFailure(minimalApp + "[control]\nidle_timeout = 10\n")
        #expect(bare?.hasPrefix("/etc/baton/shop.toml:7: control.idle_timeout:") == true, "\(bare ?? "parsed")")
    }
}
