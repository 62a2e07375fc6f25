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

/// Both ends of a pipe, each owned from the moment the pipe is made: whatever way a caller
/// leaves (a throw included), an end it did not hand on is closed once. A caller keeps an end
/// by consuming it (`let reader = pipe.read`); the other closes with the rest of the pipe.
@frozen public struct OwnedPipe: ~Copyable, Sendable {
    /// The read end.
    public var read: OwnedDescriptor
    /// The write end.
    public var write: OwnedDescriptor

    /// Owns `read` and `write`, the two ends of one pipe.
    public init(read: Int32, write: Int32) {
        self.read = OwnedDescriptor(read)
        self.write = OwnedDescriptor(write)
    }
}
