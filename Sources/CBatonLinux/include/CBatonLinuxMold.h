// The channel between baton and a mold (mold mode): a SOCK_SEQPACKET pair,
// datagrams carrying descriptors (SCM_RIGHTS).
#pragma once

#include <stddef.h>
#include <sys/types.h>

/// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC): fds[0] for baton,
/// fds[1] for the mold.
int CBatonLinux_seqpacket_pair(int fds[2]);

/// sendmsg of one datagram with `nfds` descriptors attached (SCM_RIGHTS),
/// MSG_NOSIGNAL. Returns the bytes sent or -1 with errno.
ssize_t CBatonLinux_send_with_fds(int fd, const void *buf, size_t len, const int *fds, int nfds);

/// recvmsg of one datagram (MSG_CMSG_CLOEXEC, MSG_DONTWAIT); descriptors that
/// came with it are closed. Sets *truncated when the datagram did not fit.
ssize_t CBatonLinux_recv_dropping_fds(int fd, void *buf, size_t len, int *truncated);
