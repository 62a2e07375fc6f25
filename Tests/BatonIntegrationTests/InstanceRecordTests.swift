import BatonCore
import BatonSystem
import BatonTestSupport
import Glibc
import Testing

extension Integration {
    /// `instance.json` is rewritten at most once per turn of the event loop, not once per
    /// worker start or exit, and always by rename (a reader never sees half of it).
    @Suite("instance record")
    struct InstanceRecordTests {
        @Test(
            "4 workers started in one turn: one rename of instance.json for them, not one per worker (after the one before any worker); the record names all 4")
        func coalescedWrites() throws {
            let watch = Protected<Int32>(-1)
            let baton = try BatonHarness(
                workers: 4, extraApp: "start_concurrency = 4", tag: "inst",
                beforeStart: { directory in
                    _ = mkdir(directory + "/run", 0o755)
                    let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
                    if fd >= 0, inotify_add_watch(fd, directory + "/run", UInt32(IN_MOVED_TO | IN_CREATE)) >= 0 { watch.withLock { $0 = fd } }
                })
            defer { baton.stop() }
            let fd = watch.withLock { $0 }
            try #require(fd >= 0, "cannot watch the runtime directory")
            defer { close(fd) }
            // The write comes at the end of the turn the workers started in; the harness may see
            // "all 4 workers ready" first (a loop turn that handles the READY=1s before its
            // timers, after the loop thread waited for a CPU): wait for the rename, then let one
            // control round trip pass (later turns) before counting every rename queued.
            var renames = Self.renames(of: "instance.json", fd, waitingUpTo: .seconds(10))
            _ = try baton.status()
            renames += Self.renames(of: "instance.json", fd)
            // Two: the record written once the sockets are open, before any worker starts, and
            // the one for the turn in which all 4 started.
            #expect(renames == 2, "instance.json replaced \(renames) times while 4 workers started")
            let text = try #require(ProcFS.read(baton.directory + "/run/instance.json"))
            let pids = try baton.status().workers.map(\.pid)
            #expect(pids.count == 4 && pids.allSatisfy { text.contains("\"pid\":\($0)") }, "\(text)")
        }

        /// IN_MOVED_TO events for `name` on the inotify `fd`, waiting up to `timeout` for the
        /// first. The watch also takes IN_CREATE (of the temporary file): the kernel merges an
        /// event identical to the one queued just before it, so renames alone would count as one.
        static func renames(of name: String, _ fd: Int32, waitingUpTo timeout: Duration) -> Int {
            let deadline = monotonicNow() + timeout
            var count = 0
            while count == 0, monotonicNow() < deadline {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, 100)
                count += renames(of: name, fd)
            }
            return count
        }

        /// IN_MOVED_TO events for `name` queued now on the inotify `fd` (non-blocking).
        static func renames(of name: String, _ fd: Int32) -> Int {
            var count = 0
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { return count }
                var offset = 0
                while offset + 16 <= n {
                    let mask = Self.word(buffer, at: offset + 4)
                    let length = Int(Self.word(buffer, at: offset + 12))
                    let nameBytes = buffer[(offset + 16)..<min(n, offset + 16 + length)].prefix { $0 != 0 }
                    if mask & UInt32(IN_MOVED_TO) != 0, String(decoding: nameBytes, as: UTF8.self) == name { count += 1 }
                    offset += 16 + length
                }
            }
        }

        /// The little-endian 32-bit word at `offset`.
        static func word(_ bytes: [UInt8], at offset: Int) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
        }
    }
}
