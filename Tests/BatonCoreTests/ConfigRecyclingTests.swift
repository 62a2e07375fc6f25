import BatonCore
import Testing

/// `[rolling] recycle_concurrency` and `recycle_spacing`.
@Suite("config: recycling budget")
struct ConfigRecyclingTests {
    @Test func defaultsAreAutoAnd100ms() throws {
        let config = try parseConfig(minimalApp)
        #expect(config.rolling.recycleConcurrency == .auto)
        #expect(config.rolling.recycleSpacing == .milliseconds(100))
    }

    @Test func valuesAreRead() throws {
        let config = try parseConfig(minimalApp + "[rolling]\nrecycle_concurrency = 3\nrecycle_spacing = \"250ms\"\n")
        #expect(config.rolling.recycleConcurrency == .fixed(3))
        #expect(config.rolling.recycleSpacing == .milliseconds(250))
        let auto = try parseConfig(minimalApp + "[rolling]\nrecycle_concurrency = \"auto\"\nrecycle_spacing = \"0s\"\n")
        #expect(auto.rolling.recycleConcurrency == .auto)
        #expect(auto.rolling.recycleSpacing == .zero)
    }

    @Test func outOfRangeValuesAreOneLineErrors() {
        #expect(
            configFailure(minimalApp + "[rolling]\nrecycle_concurrency = 5\n")
                == #"/etc/baton/shop.toml:7: rolling.recycle_concurrency: must be "auto" or between 1 and app.workers (4), got 5"#)
        #expect(
            configFailure(minimalApp + "[rolling]\nrecycle_concurrency = 0\n")
                == #"/etc/baton/shop.toml:7: rolling.recycle_concurrency: must be "auto" or at least 1, got 0"#)
        #expect(configFailure(minimalApp + "[rolling]\nrecycle_concurrency = \"many\"\n")?.contains(#"expected "auto" or an integer"#) == true)
        #expect(
            configFailure(minimalApp + "[rolling]\nrecycle_spacing = \"2h\"\n")
                == "/etc/baton/shop.toml:7: rolling.recycle_spacing: must be at most 1h, got 2h")
        #expect(configFailure(minimalApp + "[rolling]\nrecycle_spacing = 5\n")?.contains("rolling.recycle_spacing") == true)
    }
}
