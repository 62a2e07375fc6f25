import Testing

@testable import BatonCore

/// `[deploy] stability_window` and `[app] start_attempts`: defaults, off, and bad values.
@Suite("BatonConfig: stability window and start attempts")
struct ConfigCommitKeysTests {
    @Test("defaults: a 2 s stability window, 5 start attempts")
    func defaults() throws {
        let config = try parseConfig(minimalApp)
        #expect(config.deploy.stabilityWindow == .seconds(2))
        #expect(config.app.startAttempts == 5)
    }

    @Test("\"0s\" turns the window off; 0 start attempts means never give up")
    func off() throws {
        let config = try parseConfig(
            minimalApp + "start_attempts = 0\n[deploy]\nstability_window = \"0s\"\n")
        #expect(config.deploy.stabilityWindow == .zero)
        #expect(config.app.startAttempts == 0)
    }

    @Test("bad values name the key")
    func badValues() {
        let window = configFailure(minimalApp + "[deploy]\nstability_window = 2\n")
        #expect(window?.contains("deploy.stability_window") == true, "\(window ?? "parsed")")
        let attempts = configFailure(minimalApp + "start_attempts = -1\n")
        #expect(attempts?.contains("app.start_attempts") == true, "\(attempts ?? "parsed")")
    }
}
