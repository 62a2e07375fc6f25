import Foundation
import Glibc

/// How many of this process's descriptors are open on the pipe one of whose ends is `fd`
/// (found by the pipe's inode, so another test's pipe never counts, whatever numbers the
/// kernel reuses); -1 when `fd` is not open.
func descriptors(onThePipeOf fd: Int32) -> Int {
    guard let target = openFile(of: fd) else { return -1 }
    return descriptors(openOn: target)
}

/// What descriptor `fd` of this process is open on, as /proc/self/fd shows it ("pipe:[123]",
/// "socket:[456]"): a name no other open file has, so it can be looked for after the number
/// was closed (and perhaps reused); nil when `fd` is not open.
func openFile(of fd: Int32) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")
}

/// How many of this process's descriptors are open on `file` (an `openFile(of:)` name).
func descriptors(openOn file: String) -> Int {
    let numbers = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return numbers.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == file }.count
}

/// The open file ("socket:[456]") of the unix socket bound at `path` that this process holds
/// (the in-process supervisor's), found among /proc/self/fd by `getsockname`; nil when none.
///
/// It read /proc/net/unix before, which the kernel renders a page at a time: with other tests
/// making and closing sockets between two reads, a line could be skipped, and the socket was
/// "not bound" (seen twice in one CI run, under the systemd and integration suites' churn).
func unixSocketFile(boundAt path: String) -> String? {
    let numbers = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for number in numbers {
        guard let fd = Int32(number), let file = openFile(of: fd), file.hasPrefix("socket:[") else { continue }
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard named, address.sun_family == sa_family_t(AF_UNIX) else { continue }
        let bound = withUnsafeBytes(of: address.sun_path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        // The number may have been closed and reused meanwhile: the file must still be the same.
        if bound == path, openFile(of: fd) == file { return file }
    }
    return nil
}
