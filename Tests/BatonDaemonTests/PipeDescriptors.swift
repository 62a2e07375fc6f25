import Foundation
import Glibc

/// How many of this process's descriptors are open on the pipe one of whose ends is `fd`
/// (found by the pipe's inode, so another test's pipe never counts, whatever numbers the
/// kernel reuses); -1 when `fd` is not open.
func descriptors(onThePipeOf fd: Int32) -> Int {
    var st = stat()
    guard fstat(fd, &st) == 0 else { return -1 }
    let target = "pipe:[\(st.st_ino)]"
    let numbers = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return numbers.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == target }.count
}
