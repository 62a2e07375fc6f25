import Glibc

extension Sockets {
    /// The file a unix socket was bound to (device and inode, as `stat` gives them), asked of
    /// the kernel by sock_diag (`UDIAG_SHOW_VFS`); nil for a socket with no file (abstract, or
    /// never bound), one that is not a unix socket, or a kernel without `unix_diag`. A socket's
    /// own inode is not its file's: only this tells whether the file at its path is its own
    /// (a re-audit: a socket passed in whose file was replaced by another socket's, at a path
    /// baton took as it found it, served nobody while status said all was well). The kernel
    /// gives 32 bits of the inode: compare with ``isBoundFile(_:of:)``.
    public static func boundFile(of fd: Int32) -> FileIdentity? {
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        let netlink = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4)  // NETLINK_SOCK_DIAG
        guard netlink >= 0 else { return nil }
        defer { close(netlink) }
        // struct nlmsghdr, then struct unix_diag_req: AF_UNIX, every state, this inode,
        // UDIAG_SHOW_VFS, no cookie.
        var request: [UInt8] = []
        func put32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { request += $0 } }
        func put16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { request += $0 } }
        put32(40)
        put16(20)  // SOCK_DIAG_BY_FAMILY
        put16(1)  // NLM_F_REQUEST
        put32(1)
        put32(0)
        request += [UInt8(AF_UNIX), 0, 0, 0]
        put32(UInt32.max)
        put32(UInt32(truncatingIfNeeded: info.st_ino))
        put32(2)  // UDIAG_SHOW_VFS
        put32(UInt32.max)
        put32(UInt32.max)
        guard send(netlink, request, request.count, 0) == request.count else { return nil }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(netlink, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var reply = [UInt8](repeating: 0, count: 8192)
        let n = reply.withUnsafeMutableBytes { recv(netlink, $0.baseAddress, $0.count, 0) }
        func read32(_ at: Int) -> UInt32 { UInt32(reply[at]) | UInt32(reply[at + 1]) << 8 | UInt32(reply[at + 2]) << 16 | UInt32(reply[at + 3]) << 24 }
        func read16(_ at: Int) -> Int { Int(reply[at]) | Int(reply[at + 1]) << 8 }
        // The answer: a message of the request's type (NLMSG_ERROR otherwise), a unix_diag_msg
        // of 16 bytes, then attributes; UNIX_DIAG_VFS (1) holds the file's inode and device.
        guard n >= 32, read16(4) == 20 else { return nil }
        let end = min(n, Int(read32(0)))
        var at = 32
        while at + 4 <= end {
            let length = read16(at)
            guard length >= 4 else { return nil }
            if read16(at + 2) == 1, length >= 12 {
                let inode = read32(at + 4)
                let device = read32(at + 8)
                // The kernel's own device number (major << 20 | minor), as stat encodes it.
                let (major, minor) = (UInt64(device >> 20), UInt64(device & 0xfffff))
                let encoded = (major & 0xfffff000) << 32 | (major & 0xfff) << 8 | (minor & 0xffffff00) << 12 | (minor & 0xff)
                return FileIdentity(device: encoded, inode: UInt64(inode))
            }
            at += (length + 3) & ~3
        }
        return nil
    }

    /// Whether `file` (a `stat` of the path) is the file `bound` (``boundFile(of:)``) names.
    public static func isBoundFile(_ file: FileIdentity, of bound: FileIdentity) -> Bool {
        file.device == bound.device && file.inode & 0xffff_ffff == bound.inode
    }
}
