import Glibc

/// Simulated memory footprint and leaks.
///
/// `@unchecked Sendable`: `chain` is only touched with `monitor` locked.
final class Memory: @unchecked Sendable {
    static let shared = Memory()

    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    private let monitor = Monitor()
    /// The last leaked block; each block starts with a pointer to the one before. Keeping them
    /// reachable from a global stops the optimizer from dropping the allocation and its writes
    /// (it did, in release builds, when the pointer went nowhere).
    private var chain: UnsafeMutableRawPointer?

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
}
