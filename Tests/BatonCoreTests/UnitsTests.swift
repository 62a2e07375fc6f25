import BatonCore
import Testing

/// Size strings and the bytes they mean.
private let sizeCases: [(String, UInt64)] = [
    ("0B", 0),
    ("4096B", 4096),
    ("1K", 1024),
    ("1KiB", 1024),
    ("1KB", 1000),
    ("512MiB", 512 << 20),
    ("512M", 512 << 20),
    ("100MB", 100_000_000),
    ("1.5GiB", 3 << 29),
    ("2G", 2 << 30),
    ("1GB", 1_000_000_000),
    ("2TiB", 2 << 40),
    ("1T", 1 << 40),
    ("3TB", 3_000_000_000_000),
    ("512.0 MiB", 512 << 20),
    ("1.1KiB", 1126),
]

/// Byte counts and how they are formatted.
private let formattedSizeCases: [(UInt64, String)] = [
    (0, "0 B"),
    (512, "512 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (512 << 20, "512.0 MiB"),
    (3 << 29, "1.5 GiB"),
    ((1 << 20) - 1, "1.0 MiB"),
    (5 << 40, "5.0 TiB"),
    (UInt64.max, "16.0 EiB"),
]

@Suite("Units")
struct UnitsTests {
    @Test(arguments: [
        ("0s", Duration.zero),
        ("500ms", .milliseconds(500)),
        ("30s", .seconds(30)),
        ("1.5s", .milliseconds(1500)),
        ("0.25s", .milliseconds(250)),
        ("5m", .seconds(300)),
        ("5min", .seconds(300)),
        ("6h", .seconds(6 * 3600)),
        ("2d", .seconds(2 * 86_400)),
        ("1h30m", .seconds(5400)),
        ("1h 30m", .seconds(5400)),
        ("1m30s500ms", .milliseconds(90_500)),
        ("0.000001ms", .nanoseconds(1)),
        (" 10s ", .seconds(10)),
    ])
    func parsesDurations(text: String, expected: Duration) {
        #expect(Units.parseDuration(text) == expected)
    }

    @Test(arguments: [
        "", "30", "0", "s", "30x", "-5s", "1.s", ".5s", "5 s s", "1h30", "30S", "1e3s", "99999999999999999999d",
    ])
    func rejectsDurations(text: String) {
        #expect(Units.parseDuration(text) == nil)
    }

    @Test(arguments: sizeCases)
    func parsesSizes(text: String, expected: UInt64) {
        #expect(Units.parseSize(text) == expected)
    }

    @Test(arguments: ["", "512", "MiB", "512mib", "512 MiB extra", "-1GiB", "1.GiB", "1EiB", "20000000000TiB"])
    func rejectsSizes(text: String) {
        #expect(Units.parseSize(text) == nil)
    }

    /// The limit of a size baton takes is 1 PiB, and it says so: "PiB" is a unit it reads (a
    /// hostile-input audit: "--need 1PiB" was refused with "at most 1 PiB").
    @Test func petabytesAreAUnitUpToTheBound() {
        #expect(Units.parseBoundedSize("1PiB") == Units.maxSize && Units.parseBoundedSize("1P") == Units.maxSize)
        #expect(Units.parseBoundedSize("1.5PiB") == nil && Units.parseSize("2PB") == 2_000_000_000_000_000)
        #expect(Units.formatSize(Units.maxSize) == "1.0 PiB")
    }

    /// One line for each way a timeout can be wrong (a hostile-input audit: an overflowing or
    /// negative one said "expected a duration", and "0s" was taken).
    @Test func timeoutProblemsSayWhatIsWrong() {
        #expect(Units.timeoutProblem("10m", option: "--timeout") == nil)
        #expect(Units.timeoutProblem("0s", option: "--timeout") == #"--timeout: must be more than 0s, got "0s""#)
        #expect(Units.timeoutProblem("-1s", option: "--timeout") == #"--timeout: must not be negative, got "-1s""#)
        #expect(Units.timeoutProblem("2562048h", option: "deploy.timeout") == #"deploy.timeout: too large, got "2562048h""#)
        #expect(Units.timeoutProblem("soon", option: "--timeout") == #"--timeout: expected a duration like "10m", got "soon""#)
        let long = Units.timeoutProblem(String(repeating: "x", count: 10_000) + "\n", option: "--timeout")
        #expect(long?.hasSuffix(String(repeating: "x", count: 64) + #"…""#) == true && long?.count ?? 0 < 120)
    }

    @Test(arguments: [("90%", 0.9), ("100%", 1.0), ("12.5%", 0.125), ("0%", 0.0), ("150%", 1.5), ("90 %", 0.9)])
    func parsesPercentages(text: String, expected: Double) {
        #expect(Units.parsePercent(text) == expected)
    }

    @Test(arguments: ["90", "%", "ninety%", "-5%", "9 0%", "0.9"])
    func rejectsPercentages(text: String) {
        #expect(Units.parsePercent(text) == nil)
    }

    @Test(arguments: [
        (Duration.zero, "0s"),
        (.milliseconds(500), "500ms"),
        (.seconds(2), "2s"),
        (.milliseconds(1500), "1.5s"),
        (.seconds(5400), "1h30m"),
        (.seconds(90), "1m30s"),
        (.seconds(93_600), "1d2h"),
        (.seconds(3600), "1h"),
        (.microseconds(1500), "1.5ms"),
        (.nanoseconds(1), "0.000001ms"),
        (.seconds(-2), "-2s"),
    ])
    func formatsDurations(duration: Duration, expected: String) {
        #expect(Units.formatDuration(duration) == expected)
    }

    @Test(arguments: [
        Duration.zero, .nanoseconds(7), .milliseconds(1), .milliseconds(1001), .seconds(59),
        .seconds(86_399), .seconds(3 * 86_400 + 1), .nanoseconds(123_456_789_012),
    ])
    func formattedDurationsParseBack(duration: Duration) {
        #expect(Units.parseDuration(Units.formatDuration(duration)) == duration)
    }

    @Test(arguments: formattedSizeCases)
    func formatsSizes(bytes: UInt64, expected: String) {
        #expect(Units.formatSize(bytes) == expected)
    }

    @Test func formattedSizesParseBack() {
        #expect(Units.parseSize(Units.formatSize(512 << 20)) == 512 << 20)
        #expect(Units.parseSize(Units.formatSize(3 << 29)) == 3 << 29)
    }
}
