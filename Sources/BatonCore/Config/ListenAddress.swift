/// An address baton listens on when it is not socket-activated: a TCP address with an IP
/// literal, or a unix stream socket path.
///
/// Hosts are IP literals only: resolving names at start-up would make listening depend on DNS.
/// Parsed hosts are kept in canonical form (IPv6 as RFC 5952 writes it), so two spellings of
/// one address compare equal.
public enum ListenAddress: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    /// A TCP socket. `host` is an IPv4 dotted quad or an IPv6 address without brackets; port 0
    /// asks the kernel for a free port (tests use it).
    case tcp(host: String, port: UInt16)
    /// A unix stream socket at an absolute path.
    case unix(path: String)

    /// The longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
    public static let maxUnixPathLength = 107

    /// Parses `"127.0.0.1:8080"`, `"[::1]:8080"`, `"0.0.0.0:80"`, `"[::]:80"`,
    /// `"unix:/run/x.sock"` or a bare absolute path `"/run/x.sock"`.
    ///
    /// - Returns: nil for a host that is not an IP literal (names included), a missing or
    ///   out-of-range port, or a unix path that is relative or too long.
    public static func parse(_ s: String) -> ListenAddress? {
        if s.hasPrefix("unix:") {
            return unixAddress(String(s.dropFirst(5)))
        }
        if s.hasPrefix("/") {
            return unixAddress(s)
        }
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.first == ":", let port = parsePort(rest.dropFirst()),
                let groups = IPAddressText.parseIPv6(host)
            else { return nil }
            return .tcp(host: IPAddressText.formatIPv6(groups), port: port)
        }
        guard let colon = s.lastIndex(of: ":"),
            let octets = IPAddressText.parseIPv4(s[..<colon]),
            let port = parsePort(s[s.index(after: colon)...])
        else { return nil }
        return .tcp(host: octets.map(String.init).joined(separator: "."), port: port)
    }

    /// The canonical form: `"127.0.0.1:8080"`, `"[::1]:8080"`, `"unix:/path"`;
    /// ``parse(_:)`` reads it back to an equal value.
    /// Whether `a` and `b` cannot both be bound: TCP on the same non-zero port where one is the
    /// wildcard of the other's family (`0.0.0.0`, `::`).
    public static func overlap(_ a: ListenAddress, _ b: ListenAddress) -> Bool {
        guard case .tcp(let hostA, let portA) = a, case .tcp(let hostB, let portB) = b, portA == portB, portA != 0 else { return false }
        let v6A = hostA.contains(":" as Character)
        let v6B = hostB.contains(":" as Character)
        guard v6A == v6B else { return false }
        let wildcard = v6A ? "::" : "0.0.0.0"
        return hostA == wildcard || hostB == wildcard
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port):
            return host.contains(":" as Character) ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path):
            return "unix:\(path)"
        }
    }

    /// Whether a socket bound to it is at exactly this address: a unix path or a TCP port
    /// other than 0 (which the kernel picks).
    public var fixedPort: Bool {
        if case .tcp(_, 0) = self { return false }
        return true
    }

    /// Whether this is a unix socket (whose file mode `listen.socket_mode` sets).
    public var isUnix: Bool {
        if case .unix = self { return true }
        return false
    }

    /// A unix address for `path`, if it is absolute, short enough and has no NUL byte; `//`
    /// and `/./` taken out (the same file: a listeners audit listed `/d/a.sock` and
    /// `/d//./a.sock` past check-config, then serve failed on `Address already in use`). `..`
    /// stays: through a symbolic link it is not the folder before it.
    private static func unixAddress(_ path: String) -> ListenAddress? {
        guard path.hasPrefix("/"), path.utf8.count > 1, path.utf8.count <= maxUnixPathLength,
            !path.utf8.contains(0)
        else { return nil }
        let parts = path.split(separator: "/").filter { $0 != "." }
        guard !parts.isEmpty else { return nil }
        return .unix(path: "/" + parts.joined(separator: "/") + (path.hasSuffix("/") ? "/" : ""))
    }

    /// Why `text` is not an address ``parse(_:)`` takes, when a specific reason is known (a
    /// listeners audit: a 112-byte path was told it was not `IP:PORT`).
    public static func whyNot(_ text: String) -> String? {
        let path = text.hasPrefix("unix:") ? String(text.dropFirst(5)) : text.hasPrefix("/") ? text : nil
        if let path, path.utf8.count > maxUnixPathLength {
            return "the unix socket path is \(path.utf8.count) bytes long: at most \(maxUnixPathLength) fit in a socket address"
        }
        if let path, !path.hasPrefix("/") { return "a unix socket path must be absolute" }
        if text.hasPrefix("["), text.contains("%" as Character) {
            return "a zone (%interface) cannot be given: an IPv6 link-local address cannot be listened on"
        }
        return nil
    }

    /// Why the kernel refuses to listen on this address, which parses (a listeners audit: each
    /// passed check-config, then serve exited 1 on `Invalid argument`, which the unit's
    /// `RestartPreventExitStatus=2` does not stop).
    public var unbindable: String? {
        guard case .tcp(let host, let port) = self, host.contains(":" as Character) else { return nil }
        if host.hasPrefix("::ffff:"), host.contains("." as Character) {
            return "an IPv4-mapped IPv6 address: baton's IPv6 sockets are IPv6-only; write \(host.dropFirst(7)):\(port)"
        }
        // A re-audit: `[ff02::1]` passed too, then `Invalid argument`.
        if host.hasPrefix("ff") { return "an IPv6 multicast address: TCP cannot listen on it" }
        if let first = IPAddressText.parseIPv6(Substring(host))?.first, first & 0xFFC0 == 0xFE80 {
            return "an IPv6 link-local address needs an interface (a zone such as %eth0), which [listen] cannot name: listen on [::]:\(port) or another address"
        }
        return nil
    }

    /// A decimal port 0...65535 (no sign, no spaces, at most 5 digits).
    private static func parsePort(_ text: Substring) -> UInt16? {
        guard (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let value = Int(text), value <= 65_535
        else { return nil }
        return UInt16(value)
    }
}

/// Pure-Swift IP literal parsing and formatting (no `inet_pton`, so BatonCore stays free of
/// libc networking).
enum IPAddressText {
    /// Parses a dotted quad; rejects leading zeros (`010` reads as octal to some tools).
    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.utf8.count),
                part.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                part.utf8.count == 1 || part.utf8.first != 0x30,
                let value = Int(part), value <= 255
            else { return nil }
            octets.append(UInt8(value))
        }
        return octets
    }

    /// Parses an IPv6 address (with `::` compression and an optional trailing dotted quad) into
    /// its eight 16-bit groups. Zone indices (`%eth0`) are not accepted.
    static func parseIPv6(_ text: Substring) -> [UInt16]? {
        guard !text.isEmpty, !text.contains("%" as Character) else { return nil }
        let compressions = text.ranges(of: "::")
        guard let gap = compressions.first else {
            guard let groups = parseGroups(text, allowIPv4Tail: true) else { return nil }
            return groups.count == 8 ? groups : nil
        }
        guard compressions.count == 1,
            let head = parseGroups(text[..<gap.lowerBound], allowIPv4Tail: false),
            let tail = parseGroups(text[gap.upperBound...], allowIPv4Tail: true),
            head.count + tail.count <= 7
        else { return nil }
        return head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
    }

    /// Formats eight groups as RFC 5952 does: lowercase hex without leading zeros, the longest
    /// run (two or more) of zero groups replaced by `::`, IPv4-mapped addresses as
    /// `::ffff:a.b.c.d`.
    static func formatIPv6(_ groups: [UInt16]) -> String {
        if groups[0..<5].allSatisfy({ $0 == 0 }), groups[5] == 0xFFFF {
            let quad = [groups[6] >> 8, groups[6] & 0xFF, groups[7] >> 8, groups[7] & 0xFF]
            return "::ffff:" + quad.map { String($0) }.joined(separator: ".")
        }
        var bestStart = -1
        var bestLength = 0
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            let start = index
            while index < 8, groups[index] == 0 { index += 1 }
            if index - start > bestLength, index - start >= 2 {
                bestStart = start
                bestLength = index - start
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestStart >= 0 else { return hex.joined(separator: ":") }
        let head = hex[0..<bestStart].joined(separator: ":")
        let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
        return head + "::" + tail
    }

    /// Parses colon-separated hex groups (`""` gives none); the last may be a dotted quad when
    /// `allowIPv4Tail` is set, counting as two groups.
    private static func parseGroups(_ text: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
        if text.isEmpty { return [] }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var groups: [UInt16] = []
        for (offset, part) in parts.enumerated() {
            if offset == parts.count - 1, allowIPv4Tail, part.contains("." as Character) {
                guard let octets = parseIPv4(part) else { return nil }
                groups.append(UInt16(octets[0]) << 8 | UInt16(octets[1]))
                groups.append(UInt16(octets[2]) << 8 | UInt16(octets[3]))
                continue
            }
            guard (1...4).contains(part.utf8.count), part.allSatisfy(\.isHexDigit),
                let value = UInt16(part, radix: 16)
            else {
                return nil
            }
            groups.append(value)
        }
        return groups.count <= 8 ? groups : nil
    }
}
