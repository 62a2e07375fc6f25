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

/// The open file ("socket:[456]") of the unix socket bound at `path`, from /proc/net/unix
/// (whose lines end with the inode and the path); nil when no socket is bound there.
func unixSocketFile(boundAt path: String) -> String? {
    guard let table = try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8) else { return nil }
    for line in table.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 8, fields.last.map(String.init) == path else { continue }
        return "socket:[\(fields[6])]"
    }
    return nil
}
