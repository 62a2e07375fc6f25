import Glibc

/// Simulated memory footprint and leaks.
///
/// `@unchecked Sendable`: `chain` and `shared` are only touched with `monitor` locked.
final class Memory: @unchecked Sendable {
    static let shared = Memory()

    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    private let monitor = Monitor()
    /// The last leaked block; each block starts with a pointer to the one before. Keeping them
    /// reachable from a global stops the optimizer from dropping the allocation and its writes
    /// (it did, in release builds, when the pointer went nowhere).
    private var chain: UnsafeMutableRawPointer?
    /// The `--hold-shared` mapping, kept for the worker's life.
    private var shared: UnsafeMutableRawPointer?

    /// Allocates `bytes`, writes every page so it is really resident, and never frees it.
    func leak(bytes: Int) {
        guard bytes > 0 else { return }
        let size = max(bytes, MemoryLayout<UnsafeMutableRawPointer>.size)
        guard let block = malloc(size) else {
            log("cannot allocate \(size) bytes")
            return
        }
        var offset = 0
        while offset < size {
            block.storeBytes(of: 0xA5, toByteOffset: offset, as: UInt8.self)
            offset += pageSize
        }
        block.storeBytes(of: 0xA5, toByteOffset: size - 1, as: UInt8.self)
        monitor.withLock {
            block.storeBytes(of: chain, as: UnsafeMutableRawPointer?.self)
            chain = block
        }
    }

    /// Maps the whole of `path` shared, writes one byte in every page so each is resident in
    /// this process, and keeps the mapping for the worker's life. Exits 2 when the file cannot
    /// be mapped.
    func holdShared(path: String) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { fail("--hold-shared \(path): \(errorText(errno))", status: 2) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { fail("--hold-shared \(path): fstat: \(errorText(errno))", status: 2) }
        let size = Int(st.st_size)
        guard size > 0 else { fail("--hold-shared \(path): the file is empty", status: 2) }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            fail("--hold-shared \(path): mmap: \(errorText(errno))", status: 2)
        }
        var offset = 0
        while offset < size {
            base.storeBytes(of: 0x5A, toByteOffset: offset, as: UInt8.self)
            offset += pageSize
        }
        monitor.withLock { shared = base }
    }
}
