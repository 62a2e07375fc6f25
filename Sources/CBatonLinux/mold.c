// The channel between baton and a mold: see CBatonLinuxMold.h.
#define _GNU_SOURCE
#include "CBatonLinuxMold.h"
#include "recv_one.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int CBatonLinux_seqpacket_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

ssize_t CBatonLinux_send_with_fds(int fd, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > 250) {
        errno = EINVAL;
        return -1;
    }
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char bytes[CMSG_SPACE(sizeof(int) * 250)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t CBatonLinux_recv_dropping_fds(int fd, void *buf, size_t len, int *truncated) {
    union {
        char bytes[CMSG_SPACE(sizeof(int) * 64)];
        struct cmsghdr align;
    } control;
    int flags = 0;
    ssize_t n = CBatonLinux_recv_one(fd, buf, len, control.bytes, sizeof(control.bytes), NULL, NULL, &flags);
    if (n < 0) return n;
    *truncated = (flags & (MSG_TRUNC | MSG_CTRUNC)) ? 1 : 0;
    return n;
}
