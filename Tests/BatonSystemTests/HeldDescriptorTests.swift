import BatonCore
import BatonSystem
import BatonTestTraits
import Glibc
import Testing

/// `SpawnRequest.holdFD`: the worker's own output pipe's read end, placed at
/// `WorkerContract.outputReaderFD`, so a worker's log line finds a reader
/// after baton's death instead of raising SIGPIPE.
@Suite("LinuxProcessLauncher: held descriptor", .serialized, .ownThread)
struct HeldDescriptorTests {
    /// Prints the child's fds as "N TARGET", waits for a byte (or end of file) on
    /// fd 3, then writes to stdout, whose only reader left is its own held fd:
    /// the write succeeds instead of raising SIGPIPE.
    private static let script = """
        import os, sys
        me = os.getpid()
        fds = sorted(int(n) for n in os.listdir('/proc/self/fd'))
        lines = [str(n) + ' ' + os.readlink('/proc/self/fd/%d' % n) for n in fds if os.path.exists('/proc/self/fd/%d' % n) and os.readlink('/proc/self/fd/%d' % n) != '/proc/%d/fd' % me]
        sys.stdout.write('\\n'.join(lines) + '\\n')
        sys.stdout.flush()
        os.read(3, 1)
        os.write(1, b'after\\n')
        """

    @Test("placed at its fixed number without close-on-exec, and keeps the pipe readable after the parent's copy is gone")
    func heldReadEndSurvivesItsParentsCopy() throws {
        let output = try makePipe()
        let input = try makeBlockingPipe()
        let target = fdTarget(output.read)
        var request = SpawnRequest(
            argv: [python3, "-c", Self.script], environment: childEnvironment, passFDs: [input.read], stdout: output.write)
        request.holdFD = output.read
        request.holdTarget = WorkerContract.outputReaderFD
        let child = try LinuxProcessLauncher().spawn(request)
        close(output.write)
        close(input.read)
        let listing = readListing(output.read, last: "\(WorkerContract.outputReaderFD) ")
        let lines = listing.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1).map(String.init) }
        #expect(lines.map { $0[0] } == ["0", "1", "2", "3", "\(WorkerContract.outputReaderFD)"], "\(listing)")
        #expect(lines.last?.last == target)
        // baton dies: its copy of the read end goes. The child's next write must not kill it.
        close(output.read)
        close(input.write)
        let exit = finish(child, signal: 0)
        #expect(exit == .exited(0), "\(String(describing: exit))")
    }

    /// Reads (non-blocking fd, bounded wait) until a whole line starting with `last` came.
    private func readListing(_ fd: Int32, last: String) -> String {
        var text = ""
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var rounds = 0
        while !(text.contains(last) && text.hasSuffix("\n")), rounds < 200 {
            rounds += 1
            guard poll(&pfd, 1, 100) >= 0 else { break }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { text += String(decoding: buffer[0..<n], as: UTF8.self) } else if n == 0 { break }
        }
        return text
    }
}
