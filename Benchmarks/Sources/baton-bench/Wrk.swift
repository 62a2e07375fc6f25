import BatonTestSupport
import Glibc

/// A short wrk run (Debian's wrk, closed loop, keep-alive where the server allows
/// it): a second opinion on each contender's steady throughput and latency from a
/// standard load generator. It runs just before the `LoadClient` load of a restart
/// run and doubles as its warm-up.
struct WrkStats: Codable, Sendable {
    var seconds: Double
    var connections: Int
    var requests: Int
    var throughput: Double
    var p50: Double
    var p99: Double
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx responses.
    var errors: Int

    /// Runs wrk against 127.0.0.1:`port`; nil when wrk is missing or its output has no figures.
    static func measure(port: UInt16, connections: Int, seconds: Int) -> WrkStats? {
        guard let wrk = Tools.which("wrk") else { return nil }
        let argv = [wrk, "-t2", "-c\(connections)", "-d\(seconds)s", "--latency", "http://127.0.0.1:\(port)/"]
        guard let r = try? TestProcess.run(argv, timeout: .seconds(Int64(seconds + 15))), r.code == 0 else { return nil }
        return parse(r.stdout, seconds: Double(seconds), connections: connections)
    }

    /// Parses wrk's report: "N requests in …", "Requests/sec:", the 50% and 99% lines
    /// of "Latency Distribution", "Socket errors: …" and "Non-2xx or 3xx responses: N".
    static func parse(_ text: String, seconds: Double, connections: Int) -> WrkStats? {
        var requests: Int?
        var throughput: Double?
        var p50: Double?
        var p99: Double?
        var errors = 0
        for raw in text.split(separator: "\n") {
            let words = raw.split(separator: " ").map(String.init)
            guard let first = words.first else { continue }
            if words.count >= 2, words[1] == "requests", let n = Int(first) { requests = n }
            if first == "Requests/sec:", words.count >= 2 { throughput = Double(words[1]) }
            if first == "50%", words.count >= 2 { p50 = milliseconds(words[1]) }
            if first == "99%", words.count >= 2 { p99 = milliseconds(words[1]) }
            if first == "Socket" {
                // "Socket errors: connect 0, read 1, write 0, timeout 0"
                for (k, w) in words.enumerated() where ["connect", "read", "write", "timeout"].contains(w) && k + 1 < words.count {
                    errors += Int(words[k + 1].filter(\.isNumber)) ?? 0
                }
            }
            if raw.contains("Non-2xx or 3xx responses:"), let n = Int(words.last ?? "") { errors += n }
        }
        guard let requests, let throughput, let p50, let p99 else { return nil }
        return WrkStats(seconds: seconds, connections: connections, requests: requests, throughput: throughput, p50: p50, p99: p99, errors: errors)
    }

    /// "635.00us", "1.20ms", "2.01s" → milliseconds.
    static func milliseconds(_ s: String) -> Double? {
        for (unit, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] where s.hasSuffix(unit) {
            return Double(s.dropLast(unit.count)).map { $0 * scale }
        }
        return nil
    }
}
