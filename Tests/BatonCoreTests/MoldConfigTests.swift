import Testing

@testable import BatonCore

/// `[app] mode` and `[mold]`: defaults, values, and the one-line errors of nonsense.
@Suite("Mold config")
struct MoldConfigTests {
    @Test func defaultsAreExecAndOff() throws {
        let config = try parseConfig(minimalApp)
        #expect(config.app.mode == .exec)
        #expect(config.mold.startTimeout == .seconds(60))
        #expect(config.mold.spawnTimeout == .seconds(10))
        #expect(config.mold.reforkAfterRequests == 0)
        #expect(config.mold.reforkAfter == nil)
    }

    @Test func moldSection() throws {
        let text =
            minimalApp + "mode = \"mold\"\n[mold]\nstart_timeout = \"90s\"\nspawn_timeout = \"2s\"\n"
            + "refork_after_requests = 1000\nrefork_after = \"10m\"\n"
        let config = try parseConfig(text)
        #expect(config.app.mode == .mold)
        #expect(config.mold.startTimeout == .seconds(90))
        #expect(config.mold.spawnTimeout == .seconds(2))
        #expect(config.mold.reforkAfterRequests == 1000)
        #expect(config.mold.reforkAfter == .seconds(600))
    }

    @Test func nonsenseIsOneLine() {
        #expect(
            configFailure(minimalApp + "mode = \"fork\"\n")
                == #"/etc/baton/shop.toml:6: app.mode: must be one of "exec", "mold", got "fork""#)
        #expect(
            configFailure(minimalApp + "[mold]\nstart_timeout = \"0s\"\n")
                == #"/etc/baton/shop.toml:7: mold.start_timeout: must be greater than zero, got "0s""#)
        #expect(
            configFailure(minimalApp + "[mold]\nspawn_timeout = 5\n")
                == #"/etc/baton/shop.toml:7: mold.spawn_timeout: expected a duration with a unit, like "30s" or "500ms", got 5"#)
        #expect(
            configFailure(minimalApp + "[mold]\nstart_timeout = \"48h\"\n")
                == #"/etc/baton/shop.toml:7: mold.start_timeout: must be at most 24h, got "48h""#)
        #expect(
            configFailure(minimalApp + "[mold]\nrefork_after_requests = -1\n")
                == "/etc/baton/shop.toml:7: mold.refork_after_requests: must be between 0 and 1000000000, got -1")
        #expect(
            configFailure(minimalApp + "[mold]\nstart_timout = \"1s\"\n")
                == #"/etc/baton/shop.toml:7: unknown key "mold.start_timout" (did you mean "mold.start_timeout"?)"#)
    }
}
