// One datagram from a unix socket: see recv_one.h.
#define _GNU_SOURCE
#include "recv_one.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

ssize_t CBatonLinux_recv_one(int fd, void *buf, size_t len, void *control, size_t controllen, struct ucred *cred,
                             struct timespec *stamp, int *flags) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = controllen;
    ssize_t n;
    do {
        n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    *flags = n < 0 ? 0 : msg.msg_flags;
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (cred != NULL && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            memcpy(cred, CMSG_DATA(c), sizeof(*cred));
        } else if (stamp != NULL && c->cmsg_type == SCM_TIMESTAMPNS && c->cmsg_len == CMSG_LEN(sizeof(struct timespec))) {
            memcpy(stamp, CMSG_DATA(c), sizeof(*stamp));
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *received = (int *)CMSG_DATA(c);
            for (size_t i = 0; i < count; i++) close(received[i]);
        }
    }
    return n;
}
