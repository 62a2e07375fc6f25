// Descriptors of other processes and exec of an open file: what the take-over
// after a crash (pidfd_getfd) and `baton upgrade` (execveat of the checked fd) need.
#define _GNU_SOURCE
#include "CBatonLinux.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

int CBatonLinux_pidfd_getfd(int pidfd, int targetfd) { return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, 0); }

int CBatonLinux_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }

int CBatonLinux_is_pipe_read_end(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return 0;
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && (flags & O_ACCMODE) == O_RDONLY;
}

int CBatonLinux_execveat_fd(int fd, char *const argv[], char *const envp[]) {
    return (int)syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
}
