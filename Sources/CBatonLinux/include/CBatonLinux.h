// CBatonLinux: the few Linux calls Glibc does not expose to Swift in a usable
// form (spawning with LISTEN_PID, pidfds, SCM_CREDENTIALS, peer credentials,
// signalfd, epoll with packed events). Every function is prefixed CBatonLinux_
// and returns -1 with errno set on failure, like the syscalls it wraps.
#pragma once

#include <stdint.h>
#include <sys/types.h>

/// What the child does between its start and execve. Prepared completely by the
/// parent: the child only calls async-signal-safe functions, and writes nothing of
/// the parent's memory, which it shares (spawn.c).
typedef struct {
    /// Absolute path of the executable (PATH resolution happens in the parent).
    const char *path;
    /// NULL-terminated argv.
    char *const *argv;
    /// NULL-terminated environment. If listen_pid_index >= 0, that entry is
    /// replaced in the child by "LISTEN_PID=<the child's own pid>".
    char *const *envp;
    int listen_pid_index;
    /// Working directory, or NULL to keep the parent's.
    const char *cwd;
    /// Descriptors to place at 3, 4, ... in this order.
    const int *fds;
    int nfds;
    /// Descriptors for 0, 1, 2; -1 opens /dev/null.
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// When set_ids is non-zero: setgroups(groups), setgid(gid), setuid(uid).
    int set_ids;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    /// When non-zero, the environment entry at watchdog_pid_slot - 1 is
    /// replaced in the child by "WATCHDOG_PID=<the child's own pid>" (1-based so
    /// that a zeroed attr replaces nothing).
    int watchdog_pid_slot;
    /// When hold_target > 0, hold_fd is also placed at hold_target in the child
    /// (without close-on-exec): baton's reader of the worker's own output pipe,
    /// so that the pipe keeps a reader if baton dies. Best-effort: a target
    /// above the child's RLIMIT_NOFILE is skipped, not a spawn failure.
    int hold_fd;
    int hold_target;
    /// When non-zero, the child calls prctl(PR_SET_MEMORY_MERGE, 1) before it drops
    /// privileges and execs (KSM may then merge its pages; the flag survives execve since
    /// Linux 6.7). A refusal does not stop the spawn: its errno is stored in
    /// *memory_merge_errno (when not NULL), which is 0 otherwise.
    int memory_merge;
    int *memory_merge_errno;
    /// When non-zero, the child calls setsid (a session of its own) instead of
    /// setpgid(0, 0) (a process group of its own in the caller's session).
    int own_session;
    /// When non-zero, the child sets its RLIMIT_NOFILE soft limit to nofile_soft just
    /// before execve (after its descriptors are placed): baton raises its own soft limit
    /// to the hard one, and its workers get the one baton was started with.
    int set_nofile_soft;
    unsigned long long nofile_soft;
    /// Signals the child ignores from its start (bit sig - 1 set): SIG_IGN, set before its
    /// signal mask is emptied, survives execve, so none of them ends it before its own code
    /// runs (the config parser child).
    unsigned long long ignored_signals;
} CBatonLinux_spawn_attr;

/// Which step of the child failed (reported through a CLOEXEC pipe).
enum {
    CBatonLinux_step_none = 0,
    CBatonLinux_step_setpgid = 1,
    CBatonLinux_step_fds = 2,
    CBatonLinux_step_ids = 3,
    CBatonLinux_step_chdir = 4,
    CBatonLinux_step_exec = 5,
    /// Not a failure: prctl(PR_SET_MEMORY_MERGE) was refused, the child goes on.
    CBatonLinux_step_memory_merge = 6,
};

/// clone(CLONE_VM | CLONE_VFORK) (fork when memory_merge is set), then in the child:
/// reset every signal disposition to default, empty the signal mask, setpgid (own
/// process group; setsid with own_session), place fds at 0..2 and 3.., close every
/// other fd, drop privileges, chdir, set LISTEN_PID to its own pid, execve.
/// On success returns 0 and sets *pid and *pidfd (a pidfd opened before the
/// child can be reaped, so it names exactly this process).
/// On failure returns -1: *child_step says which step failed in the child
/// (0 if the failure was in the parent) and errno holds the error.
int CBatonLinux_spawn(const CBatonLinux_spawn_attr *attr, pid_t *pid, int *pidfd, int *child_step);

int CBatonLinux_pidfd_open(pid_t pid);
int CBatonLinux_pidfd_send_signal(int pidfd, int sig);

/// waitid(P_PIDFD, pidfd, WEXITED|WNOHANG [|WNOWAIT]).
/// Returns 1 and fills *code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and *status
/// (exit code or signal) when the process has exited; 0 when it is still
/// running; -1 on error.
int CBatonLinux_wait_pidfd(int pidfd, int nowait, int *code, int *status);

/// waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT): the pid of some exited child that
/// has not been reaped yet, 0 if none, -1 on error (ECHILD: no children).
pid_t CBatonLinux_peek_exited_child(void);

/// Reap one specific exited child (waitpid WNOHANG). Returns the pid or 0.
pid_t CBatonLinux_reap(pid_t pid, int *code, int *status);

int CBatonLinux_set_child_subreaper(void);

/// Whether this process may lower a thread's nice value to `nice` (CAP_SYS_NICE in the initial
/// user namespace, or an RLIMIT_NICE that allows it): tried on a thread made for the purpose,
/// which raises its own nice value above `nice` and sets it back. 1 yes, 0 no, -1 the probe
/// could not run.
int CBatonLinux_may_lower_nice(int nice);

/// Blocks the given signals in the calling thread (threads created later
/// inherit the mask) and returns a non-blocking CLOEXEC signalfd for them.
int CBatonLinux_signalfd(const int *signals, int count);
/// Reads one signal from a signalfd: returns the signal number, 0 if none
/// pending, -1 on error.
int CBatonLinux_signalfd_read(int fd, pid_t *sender);
/// Blocks the given signals in the calling thread only.
int CBatonLinux_block_signals(const int *signals, int count);
/// The real-time signals an application may use (glibc keeps the first two for itself).
int CBatonLinux_sigrtmin(void);
int CBatonLinux_sigrtmax(void);
/// The calling thread's blocked-signal mask as a 64-bit set (bit n-1 = signal n).
uint64_t CBatonLinux_blocked_mask(void);

int CBatonLinux_epoll_create(void);
int CBatonLinux_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// epoll_wait that unpacks the packed epoll_event array into two arrays.
int CBatonLinux_epoll_wait(int epfd, uint64_t *datas, uint32_t *events, int max, int timeout_ms);

int CBatonLinux_eventfd(void);
int CBatonLinux_timerfd(void);

/// SO_PEERCRED of a connected unix socket.
int CBatonLinux_peer_cred(int fd, pid_t *pid, uid_t *uid, gid_t *gid);
/// SO_PEERGROUPS: fills at most *count gids; sets *count to how many the peer has.
int CBatonLinux_peer_groups(int fd, gid_t *groups, int *count);
/// SO_PASSCRED and SO_TIMESTAMPNS: each datagram carries its sender's credentials and the
/// time it was queued.
int CBatonLinux_set_passcred(int fd);
/// recvmsg of one datagram with SCM_CREDENTIALS; *pid = 0 when the datagram
/// carried none. Returns the byte count; truncated datagrams set *truncated.
/// *sent_ns: when the datagram was queued (SCM_TIMESTAMPNS, CLOCK_REALTIME, ns
/// since the epoch), 0 without one. Any passed fds (SCM_RIGHTS) are closed.
ssize_t CBatonLinux_recv_with_cred(int fd, void *buf, size_t len, pid_t *pid, uid_t *uid, gid_t *gid, int *truncated,
                                   int64_t *sent_ns);

/// The errno value of the calling thread (Swift's errno is fine too; this is
/// for symmetry in C-returned paths).
int CBatonLinux_errno(void);

/// pipe2(fds, O_CLOEXEC).
int CBatonLinux_pipe_cloexec(int fds[2]);
/// accept4(fd, NULL, NULL, SOCK_NONBLOCK|SOCK_CLOEXEC), retrying EINTR.
int CBatonLinux_accept_nonblocking(int fd);

/* SIGINT, SIGTERM and SIGHUP write `message` to stderr, then kill the process with that
 * signal (its default action). A later call replaces the message. */
void CBatonLinux_say_on_interrupt(const char *message);
/// setvbuf(stdout, NULL, _IOLBF, 0): progress lines reach pipes as they happen.
void CBatonLinux_line_buffer_stdout(void);

/// Flushes stdout: 0 when everything it was given was written, else 1 with the flush's errno in
/// `*error` (0 when an earlier write failed and the flush itself did not).
int CBatonLinux_flush_stdout(int *error);
/// memfd_create(name, 0): an anonymous file (no close-on-exec: it is meant
/// to cross an execve).
int CBatonLinux_memfd(const char *name);
/// execve that returns only on failure.
int CBatonLinux_execve(const char *path, char *const argv[], char *const envp[]);

/// pidfd_getfd(pidfd, targetfd, 0): a duplicate (close-on-exec) of another
/// process's descriptor; needs ptrace rights over it (root, or same uid).
int CBatonLinux_pidfd_getfd(int pidfd, int targetfd);
/// fcntl(F_SETPIPE_SZ): returns the pipe's new capacity in bytes, -1 on error.
int CBatonLinux_set_pipe_size(int fd, int size);
/// fcntl(F_GETFL) & O_ACCMODE == O_RDONLY and fstat says FIFO: 1, else 0.
int CBatonLinux_is_pipe_read_end(int fd);
/// execveat(fd, "", argv, envp, AT_EMPTY_PATH): executes the open file itself,
/// so what was checked is what runs. Returns only on failure.
int CBatonLinux_execveat_fd(int fd, char *const argv[], char *const envp[]);

/// How many CPUs this thread may run on (sched_getaffinity), -1 on failure.
int CBatonLinux_affinity_cpus(void);

#include "CBatonLinuxMold.h"
