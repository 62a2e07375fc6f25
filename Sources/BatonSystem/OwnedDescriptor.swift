import Glibc

/// A file descriptor with exactly one owner: closed once, when the owner drops it (or
/// handed on with `release()`). Noncopyable, so two owners cannot both close it, and an
/// owner that let go of it cannot use a number the kernel may already have given to
/// another file.
public struct OwnedDescriptor: ~Copyable, Sendable {
    /// The descriptor number.
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (must be open).
    public init(_ rawValue: Int32) {
        precondition(rawValue >= 0, "OwnedDescriptor of a closed descriptor")
        self.rawValue = rawValue
    }

    /// Gives up ownership without closing: the caller is the owner now.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    deinit { close(rawValue) }
}
