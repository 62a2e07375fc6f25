import BatonCore
import Glibc
import Synchronization

/// baton's RLIMIT_NOFILE. `baton serve` raises its soft limit to the hard one: each worker
/// costs baton descriptors (its pidfd, output pipe, notify socket), as each control or metrics
/// client does, and systemd's default soft limit is 1,024 (an audit of resource exhaustion:
/// the soft limit stayed where baton was started, and with `ulimit -n 64` a surge deploy of 12
/// workers failed on "Too many open files"). The processes baton starts get the soft limit
/// baton was started with (`SpawnRequest.descriptorSoftLimit`): a program that uses select(2)
/// breaks on descriptors above 1,023. Go's runtime does the same.
public enum DescriptorLimit {
    private static let startedWith = Mutex<UInt64?>(nil)

    /// The soft limit baton was started with, once `raise()` raised it (nil: not raised).
    public static var original: UInt64? { startedWith.withLock { $0 } }

    /// Carries the limit baton was started with across `baton upgrade`'s execve.
    private static let variable = "BATON_NOFILE_SOFT"

    /// RLIMIT_NOFILE (7 on Linux; Swift imports the enum case, not a plain number).
    private static let resource = __rlimit_resource_t(7)

    /// Raises the soft limit to the hard one (at most /proc/sys/fs/nr_open when the hard one is
    /// unlimited); nothing when the soft one already is the hard one or the kernel refuses.
    public static func raise() {
        // An image re-executed by `baton upgrade` starts with the raised limit: the one the
        // first image was started with came along in its environment.
        if let first = getenv(variable).flatMap({ UInt64(String(cString: $0)) }) { startedWith.withLock { $0 = first } }
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let from = UInt64(limit.rlim_cur)
        var to = UInt64(limit.rlim_max)
        if limit.rlim_max == rlim_t.max {
            let open = ProcFS.read("/proc/sys/fs/nr_open").flatMap { UInt64(Substring($0).trimmingWhitespace) } ?? 1 << 20
            to = max(from, open)
        }
        limit.rlim_cur = rlim_t(to)
        guard setrlimit(resource, &limit) == 0 else { return }
        startedWith.withLock { $0 = from }
        setenv(variable, String(from), 1)
    }
}

extension DescriptorLimit {
    /// The soft limit now.
    public static var soft: UInt64 {
        var limit = rlimit()
        getrlimit(resource, &limit)
        return UInt64(limit.rlim_cur)
    }

    /// Whether `error` is baton's (or the host's) own shortage, not the release's: descriptors
    /// (EMFILE, ENFILE) or processes (``hitProcessLimit(_:)``).
    public static func isShortage(_ error: any Error) -> Bool {
        let errno = errno(of: error)
        return errno == EMFILE || errno == ENFILE || hitProcessLimit(error)
    }

    /// The errno of a spawn's or a system call's error (nil for any other).
    private static func errno(of error: any Error) -> Int32? { (error as? SpawnError)?.errno ?? (error as? SystemError)?.errno }

    /// Whether a spawn's clone or fork failed with EAGAIN: a limit on processes or threads.
    private static func hitProcessLimit(_ error: any Error) -> Bool {
        guard let spawn = error as? SpawnError else { return false }
        return spawn.errno == EAGAIN && (spawn.step == "clone" || spawn.step == "fork")
    }

    /// " (baton's open descriptors reached its limit of N; …: raise LimitNOFILE= or ulimit -n)"
    /// when `error` is EMFILE, else "" (a scale audit: 128 workers under `ulimit -n 256` said
    /// only "Too many open files"; a limits re-audit: a reload's config parser said the same).
    /// " (a limit on processes or threads was reached: …)" when a spawn's clone or fork failed
    /// with EAGAIN (a hardening audit: under `TasksMax=20` a deploy failed on `clone: Resource
    /// temporarily unavailable`, no limit named).
    public static func hint(_ error: any Error) -> String {
        if hitProcessLimit(error) {
            return " (a limit on processes or threads was reached: the unit's TasksMax= (the cgroup's pids.max), ulimit -u or kernel.threads-max)"
        }
        guard errno(of: error) == EMFILE else { return "" }
        let need = "about \(DescriptorRoom.perWorker) per worker, and \(DescriptorRoom.perStart) more plus one per listening socket while one starts"
        return " (baton's open descriptors reached its limit of \(soft); it holds \(need): raise LimitNOFILE= or ulimit -n)"
    }
}
