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

    /// A policy audit: `check_interval = "1ms"` passed check-config, and baton then used 88 %
    /// of a core reading every worker's memory.
    @Test func theMemoryCheckIntervalIsAtLeast100ms() throws {
        #expect(
            configFailure(minimalApp + "[memory]\ncheck_interval = \"1ms\"\n")
                == "/etc/baton/shop.toml:7: memory.check_interval: must be at least 100ms (each check reads every worker's memory), got 1ms")
        #expect(try parseConfig(minimalApp + "[memory]\ncheck_interval = \"100ms\"\n").memory.checkInterval == .milliseconds(100))
    }

    /// Both were accepted up to Int.max, and a status report of such a daemon trapped on
    /// `jitter + 1` (arithmetic overflow: the daemon died with SIGILL).
    @Test func requestCountsAreBoundedTo10To12() throws {
        let most = try parseConfig(minimalApp + "[rolling]\nmax_requests = 1000000000000\nmax_requests_jitter = 1000000000000\n")
        #expect(most.rolling.maxRequests == RollingConfig.requestCountLimit)
        for key in ["max_requests", "max_requests_jitter"] {
            let failure = configFailure(minimalApp + "[rolling]\n\(key) = 9223372036854775807\n")
            #expect(failure?.hasPrefix("/etc/baton/shop.toml:7: rolling.\(key): ") == true, "\(failure ?? "accepted")")
            #expect(failure?.contains("\n") == false)
        }
    }
}
