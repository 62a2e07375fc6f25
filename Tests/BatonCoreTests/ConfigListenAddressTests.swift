import BatonCore
import Testing

@Suite("ListenAddress")
struct ConfigListenAddressTests {
    @Test(arguments: [
        ("127.0.0.1:8080", ListenAddress.tcp(host: "127.0.0.1", port: 8080), "127.0.0.1:8080"),
        ("0.0.0.0:80", .tcp(host: "0.0.0.0", port: 80), "0.0.0.0:80"),
        ("127.0.0.1:0", .tcp(host: "127.0.0.1", port: 0), "127.0.0.1:0"),
        ("[::1]:8080", .tcp(host: "::1", port: 8080), "[::1]:8080"),
        ("[::]:80", .tcp(host: "::", port: 80), "[::]:80"),
        ("[0:0:0:0:0:0:0:1]:443", .tcp(host: "::1", port: 443), "[::1]:443"),
        ("[2001:DB8:0:0:1:0:0:1]:65535", .tcp(host: "2001:db8::1:0:0:1", port: 65535), "[2001:db8::1:0:0:1]:65535"),
        ("[fe80::1:0]:1", .tcp(host: "fe80::1:0", port: 1), "[fe80::1:0]:1"),
        ("[::ffff:10.0.0.1]:80", .tcp(host: "::ffff:10.0.0.1", port: 80), "[::ffff:10.0.0.1]:80"),
        ("[1:2:3:4:5:6:7:8]:80", .tcp(host: "1:2:3:4:5:6:7:8", port: 80), "[1:2:3:4:5:6:7:8]:80"),
        ("unix:/run/shop/http.sock", .unix(path: "/run/shop/http.sock"), "unix:/run/shop/http.sock"),
        ("/run/shop.sock", .unix(path: "/run/shop.sock"), "unix:/run/shop.sock"),
    ])
    func parsesAndCanonicalizes(text: String, expected: ListenAddress, canonical: String) {
        let parsed = ListenAddress.parse(text)
        #expect(parsed == expected)
        #expect(parsed?.description == canonical)
        #expect(ListenAddress.parse(canonical) == expected)
    }

    @Test(arguments: [
        "", "localhost:8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80",
        "256.0.0.1:80", "1.2.3:80", "01.2.3.4:80", "::1:8080", "[::1]", "[::1]8080", "[::1:8080",
        "[1::2::3]:80", "[12345::]:80", "[1:2:3:4:5:6:7:8:9]:80", "[fe80::1%eth0]:80", "[::g]:80",
        "unix:", "unix:relative.sock", "/", "unix:/" + String(repeating: "x", count: 107),
    ])
    func rejects(text: String) {
        #expect(ListenAddress.parse(text) == nil)
    }

    @Test func unixPathLimit() {
        let longest = "/" + String(repeating: "x", count: 106)
        #expect(ListenAddress.parse(longest) == .unix(path: longest))
        #expect(ListenAddress.parse(longest)?.isUnix == true)
        #expect(ListenAddress.tcp(host: "::1", port: 1).isUnix == false)
    }

    @Test func signalNames() {
        #expect(StopConfig.parseSignal("SIGTERM")! == (15, "SIGTERM"))
        #expect(StopConfig.parseSignal("term")! == (15, "SIGTERM"))
        #expect(StopConfig.parseSignal("SIGWINCH")! == (28, "SIGWINCH"))
        #expect(StopConfig.parseSignal("HUP")! == (1, "SIGHUP"))
        #expect(StopConfig.parseSignal("SIGSTOP") == nil)
    }
}
