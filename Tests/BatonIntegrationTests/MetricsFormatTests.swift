import BatonCore
import BatonTestSupport
import FoundationEssentials
import Glibc
import Testing

extension Integration {
    /// `/metrics` read by Prometheus' own text-format parser (python3-prometheus-client):
    /// valid types, counters named `_total` that never go down, no series of a worker or a
    /// release that is gone.
    @Suite("metrics format")
    struct MetricsFormatTests {
        /// Debian's interpreter, where python3-prometheus-client is installed.
        static let python = "/usr/bin/python3"

        /// One sample as the parser saw it.
        struct Sample: Decodable, Hashable {
            var name: String
            var labels: [String: String]
            var value: Double
        }

        /// One metric family as the parser saw it (a counter's family name has no `_total`).
        struct Family: Decodable {
            var name: String
            var type: String
            var documentation: String
            var samples: [Sample]
        }

        static let parser = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            text = open(sys.argv[1]).read()
            out = [{"name": f.name, "type": f.type, "documentation": f.documentation,
                    "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
                   for f in text_string_to_metric_families(text)]
            print(json.dumps(out))
            """

        /// Scrapes `/metrics` and parses it with prometheus_client.
        static func scrape(_ port: UInt16, into directory: String) throws -> [Family] {
            let reply = try #require(HTTP.get(port: port, path: "/metrics"))
            try #require(reply.status == 200)
            let path = directory + "/scrape.txt"
            TestPaths.write(path, reply.body)
            let result = try TestProcess.run([python, "-c", parser, path], timeout: .seconds(30))
            try #require(result.code == 0, "prometheus_client rejected the scrape: \(result.stderr)\n\(reply.body)")
            return try JSONDecoder().decode([Family].self, from: Data(result.stdout.utf8))
        }

        /// Every counter sample keyed by name and labels.
        static func counters(_ families: [Family]) -> [String: Double] {
            var values: [String: Double] = [:]
            for f in families where f.type == "counter" {
                for s in f.samples {
                    values[s.name + "{" + s.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"] = s.value
                }
            }
            return values
        }

        static func value(_ families: [Family], _ name: String, _ labels: [String: String]) -> Double? {
            families.flatMap(\.samples).first { $0.name == name && $0.labels == labels }?.value
        }

        /// A history of 200 succeeded deploys, as an earlier baton left it.
        static func fullHistory(_ directory: String) {
            _ = mkdir(directory + "/state", 0o755)
            let encoder = JSONEncoder()
            var text = ""
            for i in 0..<200 {
                let entry = HistoryEntry(
                    kind: .deploy, release: "/srv/old/\(i)", previousRelease: nil, outcome: .succeeded, detail: nil,
                    startedAt: 1_700_000_000 + Double(i), duration: 1, uid: 0)
                text += String(decoding: try! encoder.encode(entry), as: UTF8.self) + "\n"
            }
            TestPaths.write(directory + "/state/history.jsonl", text)
        }

        /// Found by a hostile-input audit: a request whose lines end in a bare LF was closed
        /// with no reply (RFC 9112 lets a server take LF alone as a line end).
        @Test("the metrics endpoint answers a request whose lines end in a bare LF")
        func bareLineFeeds() throws {
            let baton = try BatonHarness(workers: 1, sections: BatonHarness.defaultSections + "\n[metrics]\naddress = \"127.0.0.1:0\"", tag: "lfmet")
            defer { baton.stop() }
            let port = try #require(baton.metricsPort())
            // And what a scrape config may send (an operator audit: these were 404).
            for request in [
                "GET /metrics HTTP/1.0\n\n", "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", "GET /metrics HTTP/1.0\nHost: x\n\n",
                "GET /metrics?module=baton HTTP/1.1\r\n\r\n", "GET /metrics/ HTTP/1.1\r\n\r\n",
                // A metrics audit: an empty line before the request line, an absolute-form target.
                "\r\nGET /metrics HTTP/1.1\r\n\r\n", "GET http://127.0.0.1:\(port)/metrics HTTP/1.1\r\n\r\n",
                // A re-audit: two or more (405).
                "\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", "\n\n\nGET /metrics HTTP/1.0\n\n",
            ] {
                let fd = try #require(HTTP.connect(port: port))
                defer { close(fd) }
                HTTP.send(fd, request)
                let reply = HTTP.readResponse(fd)
                #expect(
                    reply?.status == 200 && reply?.body.contains("baton_workers") == true, "\(request.debugDescription): \(String(describing: reply?.status))")
            }
            // Another method is 405 with Allow (a metrics audit: 404).
            let fd = try #require(HTTP.connect(port: port))
            defer { close(fd) }
            HTTP.send(fd, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            let refused = HTTP.readResponse(fd)
            #expect(refused?.status == 405 && refused?.header("allow") == "GET, HEAD", "\(String(describing: refused?.status))")
            // A request line of spaces is a bad request, not a method (a re-audit: 405).
            let garbled = try #require(HTTP.connect(port: port))
            defer { close(garbled) }
            HTTP.send(garbled, "     \r\nHost: x\r\n\r\n")
            #expect(HTTP.readResponse(garbled)?.status == 400)
        }

        /// A limits audit (20 of 20 scrapes failed): 32 connections that each sent half a request
        /// filled the endpoint's 32 places, and every scrape beyond them was closed unanswered
        /// (curl: "Empty reply from server") for as long as they were held. The oldest connection
        /// now makes room for the newest.
        @Test("40 connections that never finish their request do not keep a scrape out; the endpoint closes the oldest")
        func halfSentConnectionsDoNotBlockAScrape() throws {
            let (baton, held) = try HalfRequests.baton(tag: "slowmet")
            defer { baton.stop() }
            try held.open(40)
            for attempt in 0..<3 {
                let reply = HTTP.get(port: held.port, path: "/metrics")
                #expect(reply?.status == 200 && reply?.body.contains("baton_workers") == true, "scrape \(attempt): \(String(describing: reply?.status))")
            }
            // The first connection was closed to make room: a read sees the end of the stream, or
            // a reset where baton had not read its half request (not the 10 s receive timeout).
            var byte: UInt8 = 0
            let n = recv(held.descriptors[0], &byte, 1, 0)
            let error = errno
            #expect(n == 0 || (n < 0 && error == ECONNRESET), "recv \(n), errno \(error)")
        }

        /// A re-audit (16 of 20 scrapes with 64 connections that reopen as soon as they are
        /// closed): a scrape accepted in one batch with more than 32 connections behind it was
        /// closed for them before it was read. baton stopped, 20 half requests, a scrape and 40
        /// more wait in the backlog; it then accepts all 61 at once.
        @Test("a scrape accepted in one batch with 40 connections behind it is answered, not closed for them")
        func aScrapeInABatchOfConnectionsIsAnswered() throws {
            let (baton, held) = try HalfRequests.baton(tag: "batchmet")
            defer { baton.stop() }
            baton.process.signal(SIGSTOP)
            defer { baton.process.signal(SIGCONT) }
            try held.open(20)
            let scrape = try #require(HTTP.connect(port: held.port))
            defer { close(scrape) }
            HTTP.send(scrape, "GET /metrics HTTP/1.0\r\n\r\n")
            try held.open(40)
            baton.process.signal(SIGCONT)
            let reply = HTTP.readResponse(scrape)
            #expect(reply?.status == 200 && reply?.body.contains("baton_workers") == true, "\(String(describing: reply?.status))")
        }

        /// A second re-audit (4 of 20 scrapes with 64 connections that reopen as soon as they are
        /// closed): a scrape whose request came after its accept was closed as the oldest before
        /// it was read. The scrape and 20 half requests are accepted (a whole scrape answered
        /// behind them shows it), baton is stopped, 40 more connect, then the scrape sends its
        /// request: woken, baton sees the listener before the scrape.
        @Test("a scrape whose request comes after its accept is read before the connections behind it close it")
        func aScrapeReadLateIsAnsweredBeforeItIsClosed() throws {
            let (baton, held) = try HalfRequests.baton(tag: "latemet")
            defer { baton.stop() }
            let scrape = try #require(HTTP.connect(port: held.port))
            defer { close(scrape) }
            try held.open(20)
            #expect(HTTP.get(port: held.port, path: "/metrics")?.status == 200)
            baton.process.signal(SIGSTOP)
            defer { baton.process.signal(SIGCONT) }
            try held.open(40)
            HTTP.send(scrape, "GET /metrics HTTP/1.0\r\n\r\n")
            baton.process.signal(SIGCONT)
            let reply = HTTP.readResponse(scrape)
            #expect(reply?.status == 200 && reply?.body.contains("baton_workers") == true, "\(String(describing: reply?.status))")
        }

        @Test("prometheus_client parses every family with a real type; counters are _total and never decrease; dead workers' series go")
        func prometheusConventions() throws {
            let baton = try BatonHarness(
                workers: 2,
                sections: """
                    [listen]
                    addresses = ["127.0.0.1:0"]
                    [readiness]
                    timeout = "20s"
                    [memory]
                    check_interval = "200ms"
                    smaps_every = 1
                    [metrics]
                    address = "127.0.0.1:0"
                    """, tag: "pfmt", beforeStart: Self.fullHistory)
            defer { baton.stop() }
            let port = try #require(baton.metricsPort())

            let first = try Self.scrape(port, into: baton.directory)
            for f in first {
                #expect(["counter", "gauge", "histogram", "summary", "info"].contains(f.type), "\(f.name) has type \(f.type)")
                #expect(!f.documentation.isEmpty, "\(f.name) has no HELP")
                if f.type == "counter" {
                    #expect(f.samples.allSatisfy { $0.name.hasSuffix("_total") }, "\(f.name): \(f.samples.map(\.name))")
                }
            }
            let restartFamilies = first.filter { $0.samples.contains { $0.name.hasPrefix("baton_restarts") } }
            #expect(restartFamilies.map(\.type) == ["counter"], "restarts: \(restartFamilies.map(\.type))")
            let deploysBefore = Self.value(first, "baton_deploys_total", ["outcome": "succeeded"]) ?? 0
            // Whatever its name and type, the count of succeeded deploys never goes down.
            func succeededDeploys(_ families: [Family]) -> Double {
                families.flatMap(\.samples).filter { $0.name.hasPrefix("baton_deploys") && $0.labels["outcome"] == "succeeded" }.map(\.value).reduce(0, +)
            }

            // A reload appends to history; with a full history that pushes a deploy out of it.
            #expect(try baton.cli(["reload"]).code == 0)
            let second = try Self.scrape(port, into: baton.directory)
            #expect(try baton.cli(["deploy", "--release", baton.makeRelease("r2")]).code == 0)
            let third = try Self.scrape(port, into: baton.directory)

            #expect(succeededDeploys(second) >= succeededDeploys(first), "succeeded deploys went down after a reload")
            #expect(Self.value(third, "baton_deploys_total", ["outcome": "succeeded"]) == deploysBefore + 1)
            for (earlier, later) in [(first, second), (second, third)] {
                let a = Self.counters(earlier)
                let b = Self.counters(later)
                for (key, value) in a {
                    let next: Double = b[key] ?? -1
                    #expect(next >= value, "counter \(key) went from \(value) to \(next) (-1: gone)")
                }
            }

            // After the deploy every worker was replaced: no series names an old pid or release.
            let status = try baton.status()
            let live = Set(status.workers.map { String($0.pid) })
            let oldPIDs = Set(first.flatMap(\.samples).compactMap { $0.labels["pid"] }).subtracting(live)
            #expect(!oldPIDs.isEmpty, "the first scrape had no pid labels")
            for s in third.flatMap(\.samples) {
                if let pid = s.labels["pid"] { #expect(live.contains(pid), "\(s.name) still has dead pid \(pid)") }
                if let release = s.labels["release"] { #expect(release.hasSuffix("/r2"), "\(s.name) still has release \(release)") }
            }
        }
    }
}

/// Connections to the metrics endpoint that each sent half a request, closed with it.
private final class HalfRequests {
    let port: UInt16
    private(set) var descriptors: [Int32] = []

    init(port: UInt16) { self.port = port }

    /// A baton of one worker with its metrics endpoint, and none opened yet.
    static func baton(tag: String) throws -> (BatonHarness, HalfRequests) {
        let baton = try BatonHarness(workers: 1, sections: BatonHarness.defaultSections + "\n[metrics]\naddress = \"127.0.0.1:0\"", tag: tag)
        guard let port = baton.metricsPort() else {
            baton.stop()
            throw HarnessError("no metrics line in baton's log")
        }
        return (baton, HalfRequests(port: port))
    }
    deinit { for fd in descriptors { close(fd) } }

    /// Opens `count` more.
    func open(_ count: Int) throws {
        for _ in 0..<count {
            let fd = try #require(HTTP.connect(port: port))
            descriptors.append(fd)
            HTTP.send(fd, "GET /met")
        }
    }
}
