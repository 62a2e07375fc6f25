import BatonCore
import BatonSystem
import BatonTestSupport
import Dispatch
import Glibc
import Testing

/// Files an operator names (a config, an environment file) are read only when they are regular
/// files, never waiting on a FIFO and never reading a device without end.
@Suite("RegularFile")
struct RegularFileTests {
    static func failure(_ path: String, maxBytes: Int? = nil, pipeDeadline: Duration? = nil) -> RegularFile.Failure? {
        do {
            _ = try RegularFile.read(path, maxBytes: maxBytes, pipeDeadline: pipeDeadline)
            return nil
        } catch {
            return error
        }
    }

    @Test("a FIFO, a device and a directory are refused by type, before any read")
    func notRegular() {
        let directory = TestPaths.temporaryDirectory("regular")
        defer { TestPaths.remove(directory) }
        let fifo = FIFOProbe.make(in: directory)
        var failure: RegularFile.Failure?
        #expect(!FIFOProbe.blocks(on: fifo) { failure = Self.failure(fifo) }, "opening the FIFO waited for a writer")
        #expect(failure?.description == "\(fifo) is not a regular file (a FIFO)")
        #expect(failure?.problem == "is not a regular file (a FIFO)")
        #expect(Self.failure("/dev/zero")?.description == "/dev/zero is not a regular file (a character device)")
        #expect(Self.failure(directory)?.description == "\(directory) is not a regular file (a directory)")
        #expect(Self.failure(directory + "/nope")?.description == "cannot read \(directory)/nope: No such file or directory")
        #expect(Self.failure(directory + "/nope")?.problem == "cannot read: No such file or directory")
    }

    /// A config may come from a pipe (`check-config /dev/stdin`, `<(generate)`): read until its
    /// writer closes it, within the deadline; a FIFO nobody writes to fails at the deadline.
    @Test("a pipe is read to its end within the deadline; a FIFO nobody writes to fails at it")
    func pipes() throws {
        let directory = TestPaths.temporaryDirectory("regular")
        defer { TestPaths.remove(directory) }
        let fifo = FIFOProbe.make(in: directory)
        var failure: RegularFile.Failure?
        #expect(!FIFOProbe.blocks(on: fifo) { failure = Self.failure(fifo, pipeDeadline: .milliseconds(200)) })
        #expect(failure?.description == "\(fifo) is a pipe that no writer finished within 200ms")

        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let text = Array(String(repeating: "line\n", count: 30_000).utf8)  // more than a pipe holds
        let writer = DispatchSemaphore(value: 0)
        let writeEnd = fds[1]
        DispatchQueue.global().async {
            var offset = 0
            while offset < text.count {
                let n = text[offset...].withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                offset += n
            }
            close(writeEnd)
            writer.signal()
        }
        let read = try RegularFile.read("/proc/self/fd/\(fds[0])", maxBytes: 1 << 20, pipeDeadline: .seconds(10))
        writer.wait()
        close(fds[0])
        #expect(read == text)
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
        let fifo = FIFOProbe.make(in: directory, name: "shop.env")
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
        let blocked = FIFOProbe.blocks(on: fifo) {
            do { try ConfigHostCheck.check(config, text: text) } catch { message = "\(error)" }
        }
        #expect(!blocked, "reading the environment file waited for a writer")
        #expect(message == "shop.toml:6: app.environment_file: \(fifo) is not a regular file (a FIFO)")
    }

    /// Found by an operator audit: each passed check-config and failed `serve` at start-up.
    @Test(
        "the host check refuses what serve would: a listening socket at the control socket's path or in a missing folder, a state or runtime directory others may write in"
    )
    func whatServeRefusesAtStartUp() throws {
        let directory = TestPaths.temporaryDirectory("hostcheck")
        defer { TestPaths.remove(directory) }
        func problem(_ extraApp: String, _ sections: String) throws -> String? {
            let text = """
                [app]
                name = "shop"
                command = ["/bin/true"]
                directory = "/tmp"
                workers = 1
                \(extraApp)
                \(sections)
                [control]
                socket = "\(directory)/control.sock"

                """
            let config = try BatonConfig.parse(text, path: "shop.toml")
            do {
                try ConfigHostCheck.check(config, text: text)
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(try problem("", "[listen]\naddresses = [\"unix:\(directory)/control.sock\"]")?.contains("is also [control] socket") == true)
        // However spelled (a listeners audit).
        #expect(try problem("", "[listen]\naddresses = [\"unix:\(directory)//./control.sock\"]")?.contains("is also [control] socket") == true)
        #expect(
            try problem("", "[listen]\naddresses = [\"unix:\(directory)/missing/http.sock\"]")?.contains("its folder \(directory)/missing does not exist")
                == true)
        #expect(try problem("", "[listen]\naddresses = [\"unix:\(directory)/http.sock\"]") == nil)
        let open = directory + "/open"
        #expect(mkdir(open, 0o755) == 0 && chmod(open, 0o777) == 0)
        #expect(try problem("state_directory = \"\(open)\"", "")?.contains("app.state_directory: \(open) is writable by others (mode 777)") == true)
        #expect(try problem("runtime_directory = \"\(open)\"", "")?.contains("app.runtime_directory: \(open) is writable by others") == true)
    }
}
