// One datagram from a unix socket: the loop the notify socket's reader
// (linux.c) and the mold channel's reader (mold.c) share. Private to this
// target (not under include/).
#pragma once

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/// recvmsg of one datagram into `buf`, with `control` (`controllen` bytes,
/// aligned for a cmsghdr) for its ancillary data; MSG_DONTWAIT |
/// MSG_CMSG_CLOEXEC, retried on EINTR. Every descriptor that came with it
/// (SCM_RIGHTS) is closed: neither reader takes any. With `cred` non-NULL, an
/// SCM_CREDENTIALS message is copied to *cred (left as it was without one);
/// with `stamp` non-NULL, an SCM_TIMESTAMPNS one (SO_TIMESTAMPNS: when the
/// datagram was queued, CLOCK_REALTIME) to *stamp (left as it was without one).
/// *flags gets the message's msg_flags (0 when recvmsg failed). Returns the
/// bytes received, or -1 with errno.
ssize_t CBatonLinux_recv_one(int fd, void *buf, size_t len, void *control, size_t controllen, struct ucred *cred,
                             struct timespec *stamp, int *flags);
