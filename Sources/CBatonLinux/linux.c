// Small wrappers: signals, epoll, eventfd/timerfd, unix socket credentials.
#define _GNU_SOURCE
#include "CBatonLinux.h"
#include "recv_one.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

int CBatonLinux_errno(void) { return errno; }

int CBatonLinux_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

struct nice_probe { int target; int result; };

static void *probe_lowering(void *arg) {
    struct nice_probe *probe = arg;
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, tid);
    if (now == -1 && errno != 0) return NULL;
    int above = (now > probe->target ? now : probe->target) + 1;
    if (above > 19) {  // nothing is nicer than 19: no boot could be raised above the target
        probe->result = 1;
        return NULL;
    }
    if (setpriority(PRIO_PROCESS, tid, above) != 0) return NULL;
    probe->result = setpriority(PRIO_PROCESS, tid, probe->target) == 0 ? 1 : 0;
    return NULL;
}

int CBatonLinux_may_lower_nice(int nice) {
    struct nice_probe probe = { nice, -1 };
    pthread_t thread;
    if (pthread_create(&thread, NULL, probe_lowering, &probe) != 0) return -1;
    pthread_join(thread, NULL);
    return probe.result;
}

static void fill_set(sigset_t *set, const int *signals, int count) {
    sigemptyset(set);
    for (int i = 0; i < count; i++) sigaddset(set, signals[i]);
}

int CBatonLinux_block_signals(const int *signals, int count) {
    sigset_t set;
    fill_set(&set, signals, count);
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r != 0) {
        errno = r;
        return -1;
    }
    return 0;
}

int CBatonLinux_sigrtmin(void) { return SIGRTMIN; }
int CBatonLinux_sigrtmax(void) { return SIGRTMAX; }

int CBatonLinux_signalfd(const int *signals, int count) {
    if (CBatonLinux_block_signals(signals, count) < 0) return -1;
    sigset_t set;
    fill_set(&set, signals, count);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int CBatonLinux_signalfd_read(int fd, pid_t *sender) {
    struct signalfd_siginfo info;
    ssize_t n;
    do {
        n = read(fd, &info, sizeof(info));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n != (ssize_t)sizeof(info)) return 0;
    if (sender) *sender = (pid_t)info.ssi_pid;
    return (int)info.ssi_signo;
}

uint64_t CBatonLinux_blocked_mask(void) {
    sigset_t set;
    sigemptyset(&set);
    pthread_sigmask(SIG_BLOCK, NULL, &set);
    uint64_t mask = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (sigismember(&set, sig) == 1) mask |= (uint64_t)1 << (sig - 1);
    }
    return mask;
}

int CBatonLinux_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int CBatonLinux_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int CBatonLinux_epoll_wait(int epfd, uint64_t *datas, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n;
    do {
        n = epoll_wait(epfd, evs, max, timeout_ms);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        datas[i] = evs[i].data.u64;
        events[i] = evs[i].events;
    }
    return n;
}

int CBatonLinux_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int CBatonLinux_timerfd(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

int CBatonLinux_peer_cred(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int CBatonLinux_peer_groups(int fd, gid_t *groups, int *count) {
    socklen_t len = (socklen_t)((size_t)*count * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        if (errno == ERANGE) *count = (int)(len / sizeof(gid_t));
        return -1;
    }
    *count = (int)(len / sizeof(gid_t));
    return 0;
}

int CBatonLinux_set_passcred(int fd) {
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) return -1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
}

ssize_t CBatonLinux_recv_with_cred(int fd, void *buf, size_t len, pid_t *pid, uid_t *uid, gid_t *gid, int *truncated,
                                   int64_t *sent_ns) {
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } control;
    // uid and gid stay as they were without credentials; pid is 0 then.
    struct ucred cred = {.pid = 0, .uid = *uid, .gid = *gid};
    struct timespec stamp = {0, 0};
    int flags = 0;
    ssize_t n = CBatonLinux_recv_one(fd, buf, len, control.buf, sizeof(control.buf), &cred, &stamp, &flags);
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    *truncated = (flags & MSG_TRUNC) ? 1 : 0;
    *sent_ns = (int64_t)stamp.tv_sec * 1000000000 + stamp.tv_nsec;
    return n;
}

int CBatonLinux_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int CBatonLinux_accept_nonblocking(int fd) {
    int r;
    do {
        r = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    return r;
}

void CBatonLinux_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int CBatonLinux_flush_stdout(int *error) {
    errno = 0;
    int flushed = fflush(stdout);
    int e = errno;
    if (flushed == 0 && !ferror(stdout)) return 0;
    *error = flushed == 0 ? 0 : e;
    return 1;
}

int CBatonLinux_memfd(const char *name) { return (int)syscall(SYS_memfd_create, name, 0); }

int CBatonLinux_execve(const char *path, char *const argv[], char *const envp[]) { return execve(path, argv, envp); }

/* The CLI following a deploy: SIGINT, SIGTERM or SIGHUP (a cancelled CI job, Ctrl-C, a
 * dropped ssh) write `message` to stderr, then the CLI dies of that signal, as it would have
 * without the handler: a shell stops its script on Ctrl-C only when the child died of SIGINT
 * (an exit status of 130 does not count: a CI audit saw baton-deploy go on and print that the
 * deploy had failed). Only write(2), signal(2) and raise(3) run in the handler; the signal,
 * blocked while it runs, is delivered again when it returns, to the default action. */
static char *interrupt_message;
static size_t interrupt_length;

static void interrupt_handler(int sig) {
    if (interrupt_message) {
        ssize_t r = write(2, interrupt_message, interrupt_length);
        (void)r;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void CBatonLinux_say_on_interrupt(const char *message) {
    /* Called again once baton answered (another message): the handler must not see the new
     * text with the old length. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);
    interrupt_message = strdup(message);
    interrupt_length = interrupt_message ? strlen(interrupt_message) : 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = interrupt_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int CBatonLinux_affinity_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}
