/// The per-slot offsets that spread rolling restarts by age over `rolling.splay`.
///
/// `offset(slot) = (fnv1a(hostname) + slot × splay / N) mod splay`: the N slots sit `splay / N`
/// apart, so they never come due together, and the whole pattern is rotated by a hash of the
/// host name, so a fleet booted at the same minute does not restart in lockstep either. The
/// hash is FNV-1a, not Swift's `Hasher` (randomly seeded per process): the offsets must be the
/// same after baton restarts or re-executes itself.
public enum Splay {
    /// The offset of `slot` among `workers` slots on `hostname`, in `[0, splay)`.
    public static func offset(hostname: String, slot: Int, workers: Int, splay: Duration) -> Duration {
        let total = nanoseconds(splay)
        guard total > 0, workers > 0 else { return .zero }
        let rotation = UInt128(fnv1a64(hostname)) % total
        let position = UInt128(max(0, slot)) * total / UInt128(workers)
        let offset = (rotation + position) % total
        return .seconds(Int64(offset / 1_000_000_000)) + .nanoseconds(Int64(offset % 1_000_000_000))
    }

    /// 64-bit FNV-1a over the UTF-8 bytes of `text`.
    public static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// A non-negative duration in whole nanoseconds (negative counts as zero).
    static func nanoseconds(_ d: Duration) -> UInt128 {
        let (seconds, attoseconds) = d.components
        let nanos = Int128(seconds) * 1_000_000_000 + Int128(attoseconds / 1_000_000_000)
        return nanos > 0 ? UInt128(nanos) : 0
    }
}
