import BatonCore
import BatonSystem
import BatonTestSupport
import Dispatch
import Glibc
import Synchronization
import Testing

/// Files an operator names (a config, an environment file) are read only when they are regular
/// files, never waiting on a FIFO and never reading a device without end.
@Suite("RegularFile")
struct RegularFileTests {
    /// Runs `body` on this thread; if it has not returned within 10 s, a writer opens `fifo` so
    /// that a blocked open returns. Whether that was needed.
    static func blocksOn(_ fifo: String, _ body: () -> Void) -> Bool {
        let finished = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        let blocked = Mutex(false)
        DispatchQueue.global().async {
            if finished.wait(timeout: .now() + 10) == .timedOut {
                blocked.withLock { $0 = true }
                let writer = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if writer >= 0 { close(writer) }
            }
            released.signal()
        }
        body()
        finished.signal()
        released.wait()
        return blocked.withLock { $0 }
    }

    static func failure(_ path: String, maxBytes: Int? = nil) -> RegularFile.Failure? {
        do {
            _ = try RegularFile.read(path, maxBytes: maxBytes)
            return nil
        } catch {
            return error
        }
    }

    @Test("a FIFO, a device and a directory are refused by type, before any read")
    func notRegular() {
        let directory = TestPaths.temporaryDirectory("regular")
        defer { TestPaths.remove(directory) }
        let fifo = directory + "/fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        var failure: RegularFile.Failure?
        #expect(!Self.blocksOn(fifo) { failure = Self.failure(fifo) }, "opening the FIFO waited for a writer")
        #expect(failure?.description == "\(fifo) is not a regular file (a FIFO)")
        #expect(failure?.problem == "is not a regular file (a FIFO)")
        #expect(Self.failure("/dev/zero")?.description == "/dev/zero is not a regular file (a character device)")
        #expect(Self.failure(directory)?.description == "\(directory) is not a regular file (a directory)")
        #expect(Self.failure(directory + "/nope")?.description == "cannot read \(directory)/nope: No such file or directory")
        #expect(Self.failure(directory + "/nope")?.problem == "cannot read: No such file or directory")
    }

    @Test("a regular file is read whole, and refused past maxBytes with its size")
    func sizes() throws {
        let directory = TestPaths.temporaryDirectory("regular")
        defer { TestPaths.remove(directory) }
        let path = directory + "/file"
        TestPaths.write(path, String(repeating: "x", count: 100_000))
        #expect(try RegularFile.read(path).count == 100_000)
        #expect(try RegularFile.read(path, maxBytes: 100_000).count == 100_000)
        #expect(Self.failure(path, maxBytes: 99_999)?.problem == "is larger than 97.7 KiB (100000 bytes)")
    }

    /// `environment_file` naming a FIFO made the config's host check (and so `check-config`,
    /// `serve` and a reload) wait for a writer forever.
    @Test("an environment_file that is a FIFO fails the host check at once, naming the key")
    func environmentFileFIFO() throws {
        let directory = TestPaths.temporaryDirectory("regular")
        defer { TestPaths.remove(directory) }
        let fifo = directory + "/shop.env"
        #expect(mkfifo(fifo, 0o644) == 0)
        let text = """
            [app]
            name = "shop"
            command = ["/bin/true"]
            directory = "/tmp"
            workers = 1
            environment_file = "\(fifo)"

            """
        let config = try BatonConfig.parse(text, path: "shop.toml")
        var message: String?
        let blocked = Self.blocksOn(fifo) {
            do { try ConfigHostCheck.check(config, text: text) } catch { message = "\(error)" }
        }
        #expect(!blocked, "reading the environment file waited for a writer")
        #expect(message == "shop.toml:6: app.environment_file: \(fifo) is not a regular file (a FIFO)")
    }
}
