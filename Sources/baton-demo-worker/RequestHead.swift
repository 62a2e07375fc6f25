/// An HTTP/1.x request line and the headers the worker cares about. Parsing is pure (bytes in,
/// value out), so the I/O in `Connection` stays a thin shell around it.
struct RequestHead: Equatable {
    enum Version: Equatable { case http10, http11 }

    /// How far `parse` got.
    enum ParseResult: Equatable {
        /// The blank line ending the head has not arrived yet.
        case incomplete
        /// Not a request this worker understands; answer 400 and close.
        case invalid(String)
        /// A whole head, `length` bytes including the blank line.
        case complete(RequestHead, length: Int)
    }

    var method: String
    /// The path without its query string.
    var path: String
    /// What followed `?`, or "".
    var query: String
    var version: Version
    /// Body bytes to discard after the head.
    var contentLength = 0
    /// `Connection: close` was sent.
    var connectionClose = false
    /// `Connection: keep-alive` was sent (what an HTTP/1.0 client asks with).
    var connectionKeepAlive = false
    /// A `Transfer-Encoding` was sent: its body length is unknown to this worker.
    var hasTransferEncoding = false
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending the body.
    var expectsContinue = false

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked not to.
    var wantsKeepAlive: Bool {
        switch version {
        case .http11: return !connectionClose
        case .http10: return connectionKeepAlive && !connectionClose
        }
    }

    /// The integer value of query parameter `name`, nil when absent, `.some(nil)` when not an
    /// integer.
    func integerParameter(_ name: String) -> Int?? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts[0] == name { return .some(parts.count == 2 ? Int(parts[1]) : nil) }
        }
        return nil
    }

    private static let lf = UInt8(ascii: "\n")
    private static let cr = UInt8(ascii: "\r")

    /// Parses the head at the start of `bytes` (which may hold more: a body, the next request).
    /// Accepts bare LF line ends as well as CRLF, and skips empty lines before the request line.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> ParseResult {
        var start = 0
        while start < bytes.count && (bytes[start] == cr || bytes[start] == lf) { start += 1 }
        // Find the end of the head: LF, optional CR, LF.
        var end: Int?
        var index = start
        while index < bytes.count {
            if bytes[index] == lf {
                if index + 1 < bytes.count && bytes[index + 1] == lf {
                    end = index + 2
                    break
                }
                if index + 2 < bytes.count && bytes[index + 1] == cr && bytes[index + 2] == lf {
                    end = index + 3
                    break
                }
            }
            index += 1
        }
        guard let end else { return .incomplete }

        // Split on LF bytes, not on Characters: "\r\n" is one Character in Swift.
        var lines: [Substring] = []
        var lineStart = start
        for index in start..<end where bytes[index] == lf {
            var lineEnd = index
            if lineEnd > lineStart && bytes[lineEnd - 1] == cr { lineEnd -= 1 }
            if lineEnd > lineStart {
                let line = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd])
                lines.append(Substring(String(decoding: line, as: UTF8.self)))
            }
            lineStart = index + 1
        }
        guard !lines.isEmpty else { return .invalid("empty request") }

        switch parseRequestLine(lines[0]) {
        case .failure(let failure): return .invalid(failure.reason)
        case .success(var head):
            for line in lines.dropFirst() {
                if let reason = head.apply(headerLine: line) { return .invalid(reason) }
            }
            return .complete(head, length: end)
        }
    }

    private struct Invalid: Error { let reason: String }

    private static func parseRequestLine(_ line: Substring) -> Result<RequestHead, Invalid> {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .failure(Invalid(reason: "malformed request line"))
        }
        let version: Version
        switch parts[2] {
        case "HTTP/1.1": version = .http11
        case "HTTP/1.0": version = .http10
        default: return .failure(Invalid(reason: "unsupported version"))
        }
        var target = parts[1]
        // Absolute form (`GET http://host/path HTTP/1.1`): keep the path.
        if let schemeEnd = target.firstRange(of: "://") {
            let afterAuthority = target[schemeEnd.upperBound...]
            target = afterAuthority.firstIndex(of: "/").map { afterAuthority[$0...] } ?? "/"
        }
        guard target.hasPrefix("/") || target == "*" else {
            return .failure(Invalid(reason: "bad request target"))
        }
        let path: Substring
        var query: Substring = ""
        if let mark = target.firstIndex(of: "?") {
            path = target[..<mark]
            query = target[target.index(after: mark)...]
        } else {
            path = target
        }
        let head = RequestHead(method: String(parts[0]), path: String(path), query: String(query), version: version)
        return .success(head)
    }

    /// Applies one header line; returns why it is invalid, or nil.
    private mutating func apply(headerLine line: Substring) -> String? {
        guard let colon = line.firstIndex(of: ":") else { return "header without a colon" }
        let name = line[..<colon]
        guard !name.isEmpty, !name.contains(" "), !name.contains("\t") else { return "bad header name" }
        let value = line[line.index(after: colon)...].trimmingBlanks()
        switch name.lowercased() {
        case "content-length":
            guard !value.isEmpty, value.allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(value) else {
                return "bad Content-Length"
            }
            if contentLength != 0 && contentLength != length { return "conflicting Content-Length" }
            contentLength = length
        case "connection":
            for token in value.split(separator: ",") {
                switch token.trimmingBlanks().lowercased() {
                case "close": connectionClose = true
                case "keep-alive": connectionKeepAlive = true
                default: break
                }
            }
        case "transfer-encoding":
            hasTransferEncoding = true
        case "expect":
            expectsContinue = value.lowercased() == "100-continue"
        default:
            break
        }
        return nil
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (optional whitespace in HTTP).
    func trimmingBlanks() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
