// The spawn path. Everything between the clone and execve runs in a child of a
// multi-threaded process, so it uses only async-signal-safe calls and memory
// the parent prepared.
//
// The child shares the spawner's memory until execve (CLONE_VM | CLONE_VFORK, as
// glibc's posix_spawn and Go's os/exec do): fork would copy the spawner's page
// tables, write-protect every page it has touched (each later write in the
// spawner then faults) and, under vm.overcommit_memory=2, charge a copy of all its
// private writable mappings, thread stacks included, against the commit limit: on
// a host near that limit the spawn itself could fail with ENOMEM. Sharing the memory
// sets four rules for the child (docs/ARCHITECTURE.md, "Process model"):
// - it runs on a stack of its own and writes only there (and into the argv/envp
//   arrays the parent handed over for that);
// - no glibc call that keeps process-wide or per-thread state: set*id through raw
//   syscalls (glibc's wrappers would signal every thread of the spawner to change
//   theirs), and open, write and close too (glibc's mark the calling thread, which
//   is the spawner's, as cancellable around the call);
// - every signal is blocked around the clone, so no handler of the spawner ever
//   runs in the child before the child resets them all;
// - PR_SET_MEMORY_MERGE marks the memory itself, which is the spawner's until
//   execve: a spawn that asks for it forks, as before.
#define _GNU_SOURCE
#include "CBatonLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

int CBatonLinux_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void child_report(int errfd, int step, int error) {
    int report[2] = {step, error};
    ssize_t n;
    do {
        n = syscall(SYS_write, errfd, report, sizeof(report));
    } while (n < 0 && errno == EINTR);
}

static void child_fail(int errfd, int step) {
    child_report(errfd, step, errno);
    _exit(127);
}

// Closes every fd >= lowfd except `a` and `b` (-1: none).
static void close_from(int lowfd, int a, int b) {
    int keep[2] = {a < b ? a : b, a < b ? b : a};
    int from = lowfd;
    int ok = 1;
    // close_range exists since Linux 5.9; fall back to a loop on older kernels.
    for (int i = 0; i < 2; i++) {
        if (keep[i] < from) continue;
        if (keep[i] > from && syscall(SYS_close_range, (unsigned)from, (unsigned)(keep[i] - 1), 0) != 0) ok = 0;
        from = keep[i] + 1;
    }
    if (ok && syscall(SYS_close_range, (unsigned)from, ~0U, 0) == 0) return;
    for (int fd = lowfd; fd < 65536; fd++) {
        if (fd != a && fd != b) syscall(SYS_close, fd);
    }
}

static void format_pid_variable(char *buf, size_t size, const char *prefix, pid_t pid) {
    char digits[24];
    int n = 0;
    unsigned long v = (unsigned long)pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < (int)sizeof(digits));
    size_t pos = 0;
    for (size_t i = 0; prefix[i] && pos + 1 < size; i++) buf[pos++] = prefix[i];
    while (n > 0 && pos + 1 < size) buf[pos++] = digits[--n];
    buf[pos] = '\0';
}

static void child_main(const CBatonLinux_spawn_attr *a, int errfd) {
    // 1. Signal state: Dispatch and the Swift pool block nearly every signal
    //    and the mask survives execve. Defaults first, then an empty mask, so
    //    nothing inherited fires in between.
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        if (sigaction(sig, &sa, NULL) != 0) {
            // glibc refuses its reserved signals (32, 33); an ignored one
            // would survive execve, so reset it with the raw syscall.
            struct {
                void *handler;
                unsigned long flags;
                void *restorer;
                unsigned long mask;
            } k = {SIG_DFL, 0, NULL, 0};
            (void)syscall(SYS_rt_sigaction, sig, &k, NULL, sizeof(k.mask));
        }
    }
    for (int sig = 1; sig < NSIG && sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || !(a->ignored_signals & (1ULL << (sig - 1)))) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_IGN;
        (void)sigaction(sig, &sa, NULL);
    }
    sigset_t empty;
    sigemptyset(&empty);
    (void)sigprocmask(SIG_SETMASK, &empty, NULL);

    // 2. Own process group, in baton's session: stop signals go to the whole
    //    tree. Not setsid (unless asked: the test harness's tools): the kernel
    //    schedules each session as a group of its own (autogroup), and a session
    //    per worker cost the serving workers tens of milliseconds of latency
    //    under load (docs/ARCHITECTURE.md, "Platform facts").
    if ((a->own_session ? setsid() : setpgid(0, 0)) < 0) child_fail(errfd, CBatonLinux_step_setpgid);

    // The child runs to execve at baton's priority: `spawn` waits for that
    // execve on baton's loop, so boot_nice is set once the program runs
    // (Supervisor+BootPriority.swift), never here.

    // 3. Descriptors. Move the error pipe and every source fd above the
    //    target range first, so dup2 into 0..2 and 3.. never clobbers a source.
    int top = 3 + a->nfds;
    int e = fcntl(errfd, F_DUPFD_CLOEXEC, top + a->nfds + 3);
    if (e < 0) child_fail(errfd, CBatonLinux_step_fds);
    errfd = e;
    int high[a->nfds > 0 ? a->nfds : 1];
    for (int i = 0; i < a->nfds; i++) {
        high[i] = fcntl(a->fds[i], F_DUPFD_CLOEXEC, top + 1);
        if (high[i] < 0) child_fail(errfd, CBatonLinux_step_fds);
    }
    // Best-effort, like its placement: -1 when the copy fails.
    int hold_high = a->hold_target > 0 ? fcntl(a->hold_fd, F_DUPFD_CLOEXEC, top + 1) : -1;
    int stdio[3] = {a->stdin_fd, a->stdout_fd, a->stderr_fd};
    int stdio_high[3];
    for (int i = 0; i < 3; i++) {
        if (stdio[i] < 0) {
            stdio_high[i] = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        } else {
            stdio_high[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, top + 1);
        }
        if (stdio_high[i] < 0) child_fail(errfd, CBatonLinux_step_fds);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(stdio_high[i], i) < 0) child_fail(errfd, CBatonLinux_step_fds);
    }
    for (int i = 0; i < a->nfds; i++) {
        if (dup2(high[i], 3 + i) < 0) child_fail(errfd, CBatonLinux_step_fds);
    }
    // The held fd last, at its fixed place above the others (never onto the
    // error pipe: that moves first). dup2 clears FD_CLOEXEC; a copy already
    // there (dup2 does nothing then) needs it cleared by hand.
    int held = -1;
    if (a->hold_target >= top) {
        if (errfd == a->hold_target) {
            e = fcntl(errfd, F_DUPFD_CLOEXEC, a->hold_target + 1);
            if (e < 0) child_fail(errfd, CBatonLinux_step_fds);
            errfd = e;
        }
        if (hold_high == a->hold_target) {
            if (fcntl(hold_high, F_SETFD, 0) == 0) held = a->hold_target;
        } else if (hold_high >= 0 && dup2(hold_high, a->hold_target) >= 0) {
            held = a->hold_target;
        }
    }
    // dup2 cleared FD_CLOEXEC on 0..2 and 3..top-1; everything else goes.
    close_from(top, errfd, held);

    // 4. KSM: before the credentials change, so that whatever limits the prctl judges
    //    baton, not the worker's user. A refusal is reported, not fatal: the worker
    //    runs unmerged.
    if (a->memory_merge && prctl(PR_SET_MEMORY_MERGE, 1L, 0L, 0L, 0L) != 0) {
        child_report(errfd, CBatonLinux_step_memory_merge, errno);
    }

    // 5. Credentials, through the raw syscalls: they change this task's alone, which is
    //    the whole child (see the top of this file).
    if (a->set_ids) {
        if (syscall(SYS_setgroups, (size_t)a->ngroups, a->groups) < 0) child_fail(errfd, CBatonLinux_step_ids);
        if (syscall(SYS_setgid, a->gid) < 0) child_fail(errfd, CBatonLinux_step_ids);
        if (syscall(SYS_setuid, a->uid) < 0) child_fail(errfd, CBatonLinux_step_ids);
    }

    // 6. Working directory.
    if (a->cwd != NULL && chdir(a->cwd) < 0) child_fail(errfd, CBatonLinux_step_chdir);

    // 7. LISTEN_PID must be this process's own pid (sd_listen_fds checks it);
    //    so must WATCHDOG_PID (sd_watchdog_enabled checks it).
    char listen_pid[40];
    char watchdog_pid[40];
    char **envp = (char **)a->envp;
    if (a->listen_pid_index >= 0) {
        format_pid_variable(listen_pid, sizeof(listen_pid), "LISTEN_PID=", getpid());
        envp[a->listen_pid_index] = listen_pid;
    }
    if (a->watchdog_pid_slot > 0) {
        format_pid_variable(watchdog_pid, sizeof(watchdog_pid), "WATCHDOG_PID=", getpid());
        envp[a->watchdog_pid_slot - 1] = watchdog_pid;
    }

    if (a->set_nofile_soft) {
        struct rlimit limit;
        if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && a->nofile_soft <= limit.rlim_max) {
            limit.rlim_cur = (rlim_t)a->nofile_soft;
            (void)setrlimit(RLIMIT_NOFILE, &limit);
        }
    }

    execve(a->path, a->argv, envp);
    child_fail(errfd, CBatonLinux_step_exec);
}

struct child_start {
    const CBatonLinux_spawn_attr *attr;
    int errfd;
};

static int child_entry(void *arg) {
    const struct child_start *start = arg;
    child_main(start->attr, start->errfd);
    _exit(127);
}

// The child's stack when it shares the spawner's memory: child_main needs a few KiB
// (its arrays are sized by the descriptors passed); mapped, so only touched pages count.
#define CHILD_STACK_SIZE (256 * 1024)

// Starts the child (see the top of this file) and returns its pid, or -1 with errno.
// When the child shares the memory, this returns once the child has called execve or
// exited; a forked child runs on beside the caller.
static pid_t start_child(const CBatonLinux_spawn_attr *attr, int errfd) {
    // Every signal blocked, glibc's own (32, 33) too, hence the raw call; the child
    // inherits this mask and empties it once its dispositions are reset.
    uint64_t all = ~(uint64_t)0, saved_mask;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &saved_mask, sizeof(all)) != 0) return -1;
    struct child_start start = {attr, errfd};
    pid_t pid;
    int saved_errno;
    if (attr->memory_merge) {
        pid = fork();
        if (pid == 0) child_entry(&start);
        saved_errno = errno;
    } else {
        void *stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) {
            pid = -1;
        } else {
            pid = clone(child_entry, (char *)stack + CHILD_STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
        }
        saved_errno = errno;
        if (stack != MAP_FAILED) munmap(stack, CHILD_STACK_SIZE);
    }
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved_mask, NULL, sizeof(saved_mask));
    errno = saved_errno;
    return pid;
}

int CBatonLinux_spawn(const CBatonLinux_spawn_attr *attr, pid_t *pid_out, int *pidfd_out, int *child_step) {
    *child_step = CBatonLinux_step_none;
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0) return -1;

    pid_t pid = start_child(attr, errpipe[1]);
    if (pid < 0) {
        int saved = errno;
        close(errpipe[0]);
        close(errpipe[1]);
        errno = saved;
        return -1;
    }
    close(errpipe[1]);

    // Nobody reaps this child before we hold its pidfd (baton reaps strays
    // only after peeking with WNOWAIT and skipping known pids), so the pid
    // cannot be reused in between.
    int pidfd = CBatonLinux_pidfd_open(pid);
    int pidfd_errno = errno;

    // Records until EOF (execve closes the pipe): at most a memory-merge refusal, then a
    // failure. Each is one atomic 8-byte write.
    if (attr->memory_merge_errno != NULL) *attr->memory_merge_errno = 0;
    int records[4] = {0, 0, 0, 0};
    size_t got = 0;
    while (got < sizeof(records)) {
        ssize_t n = read(errpipe[0], (char *)records + got, sizeof(records) - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(errpipe[0]);
    int report[2] = {0, 0};
    int failed = 0;
    for (size_t i = 0; (i + 2) * sizeof(int) <= got; i += 2) {
        if (records[i] == CBatonLinux_step_memory_merge) {
            if (attr->memory_merge_errno != NULL) *attr->memory_merge_errno = records[i + 1];
        } else {
            report[0] = records[i];
            report[1] = records[i + 1];
            failed = 1;
        }
    }

    if (failed) {
        // The child failed before execve: collect it and report the step.
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (pidfd >= 0) close(pidfd);
        *child_step = report[0];
        errno = report[1];
        return -1;
    }
    if (pidfd < 0) {
        // Cannot supervise what we cannot name: kill and collect it.
        kill(pid, SIGKILL);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        errno = pidfd_errno;
        return -1;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    return 0;
}

int CBatonLinux_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int CBatonLinux_wait_pidfd(int pidfd, int nowait, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    int options = WEXITED | WNOHANG | (nowait ? WNOWAIT : 0);
    int r;
    do {
        r = waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &info, options);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (info.si_pid == 0) return 0;
    *code = info.si_code;
    *status = info.si_status;
    return 1;
}

pid_t CBatonLinux_peek_exited_child(void) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    int r;
    do {
        r = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    return info.si_pid;
}

pid_t CBatonLinux_reap(pid_t pid, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    int r;
    do {
        r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    *code = info.si_code;
    *status = info.si_status;
    return info.si_pid;
}
