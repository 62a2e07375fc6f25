"""The baton side of docs/MOLD.md for the conformance driver (mold_conformance.py).

Starts a mold as baton would, sends spawn requests with their descriptors,
waits (bounded) for replies, readiness and exits, and kills and reaps what
it started. The checks themselves are in mold_conformance.py.
"""

import array
import fcntl
import http.client
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time


PR_SET_CHILD_SUBREAPER = 36
# The watchdog interval the driver asks of a worker spawned with watchdog_pid: 0.4 s.
WATCHDOG_USEC = 400000
LISTEN_TARGET = 3
UNIX_TARGET = 4  # the second listener, with --unix
PIPE_KEEP_TARGET = 1000


class CheckFailed(Exception):
    """A check did not hold: names the check and what was seen."""

    def __init__(self, check, detail):
        super().__init__("%s: %s" % (check, detail))
        self.check = check


def proc_stat(pid):
    """(state, ppid, pgrp, session) of /proc/PID/stat, or None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def smaps_rollup(pid):
    """The kB fields of /proc/PID/smaps_rollup."""
    values = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1])
    return values


class Lines:
    """Lines read from a pipe by a thread, echoed to stderr with a prefix, awaitable."""

    def __init__(self, fd, prefix):
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(fd, prefix), daemon=True)
        self.thread.start()

    def _read(self, fd, prefix):
        partial = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            partial += chunk
            while b"\n" in partial:
                line, partial = partial.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                sys.stderr.write("%s| %s\n" % (prefix, text))
                with self.cond:
                    self.lines.append(text)
                    self.cond.notify_all()

    def wait_for(self, text, deadline):
        """True when a line containing text was read before deadline."""
        with self.cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Worker:
    """What the driver holds for one spawned worker."""

    def __init__(self, name, slot, listener, notify, notify_path, out_r, out_w):
        self.name = name
        self.slot = slot
        self.listener = listener
        self.unix_listener = None
        self.unix_path = None
        self.port = listener.getsockname()[1]
        self.notify = notify
        self.notify_path = notify_path
        self.out_r = out_r
        self.out_w = out_w
        self.output = Lines(out_r, name)
        self.pid = None


class BatonSide:
    """Plays baton: molds, channels, notify sockets, output pipes, bounded waits."""


    def __init__(self, command, directory, timeout, unix=False):
        self.command = command
        self.directory = directory
        self.timeout = timeout
        self.unix = unix
        self.listen_count = 2 if unix else 1
        # the channel right above the listening sockets, in the mold and in a worker that can be promoted
        self.mold_fd_target = LISTEN_TARGET + self.listen_count
        self.listen_names = "http:unix" if unix else "http"
        self.temp = tempfile.mkdtemp(prefix="mold-conf-")
        self.started = []  # pids to kill on the way out (all are our children)
        self.keep = []  # the molds' listening sockets
        self.passed = 0
        self.next_id = 0
        self.base_env = {k: v for k, v in os.environ.items()
                         if k != "NOTIFY_SOCKET" and not k.startswith(("LISTEN_", "WATCHDOG_", "BATON_"))}

    # -- reporting -----------------------------------------------------------

    def ok(self, check, detail=""):
        self.passed += 1
        print("PASS %s%s" % (check, (": " + detail) if detail else ""), flush=True)

    def deadline(self):
        return time.monotonic() + self.timeout

    # -- sockets -------------------------------------------------------------

    def listener(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        return s

    def unix_listener(self, name):
        path = os.path.join(self.temp, "http-" + name)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(128)
        return s, path

    def notify_socket(self, name):
        path = os.path.join(self.temp, "notify-" + name)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        s.bind(path)
        return s, path

    def wait_ready(self, check, notify, pid):
        """Waits for READY=1 sent by pid (SCM_CREDENTIALS) on notify."""
        self.wait_message(check, notify, pid, "READY=1")

    def wait_message(self, check, notify, pid, field, count=1):
        """Waits for count datagrams with the line field sent by pid (SCM_CREDENTIALS) on notify."""
        deadline = self.deadline()
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([notify], [], [], left)[0]:
                raise CheckFailed(check, "no %s from pid %d within %ss (got %r)" % (field, pid, self.timeout, seen))
            data, ancdata, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(12))
            sender = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = struct.unpack("iII", payload[:12])[0]
            text = data.decode("utf-8", "replace")
            seen.append((sender, text))
            if field in text.split("\n"):
                if sender != pid:
                    raise CheckFailed(check, "%s came from pid %s, not %d" % (field, sender, pid))
                count -= 1
                if count == 0:
                    return

    # -- processes -----------------------------------------------------------

    def launch_mold(self, name):
        """Starts the mold command as baton would; returns (pid, channel, notify socket)."""
        listener = self.listener()
        self.keep.append(listener)
        channel, mold_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        notify, notify_path = self.notify_socket(name)
        out_r, out_w = os.pipe()
        env = dict(self.base_env)
        env.update({"LISTEN_FDS": str(self.listen_count), "LISTEN_FDNAMES": self.listen_names, "NOTIFY_SOCKET": notify_path,
                    "BATON_MOLD_FD": str(self.mold_fd_target), "BATON_SLOT": "mold", "BATON_RELEASE": self.directory})
        sources = {LISTEN_TARGET: listener.fileno(), self.mold_fd_target: mold_end.fileno(), 1: out_w, 2: out_w}
        if self.unix:
            unix_listener, _ = self.unix_listener(name)
            self.keep.append(unix_listener)
            sources[UNIX_TARGET] = unix_listener.fileno()
        # The child only places descriptors and execs (no lock of ours is taken there).
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)  # as baton's spawn: its own process group, in baton's session
                # above every target first, so that placing one never overwrites another's source
                moved = {t: fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for t, fd in sources.items()}
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                for t, fd in moved.items():
                    os.dup2(fd, t)
                os.closerange(self.mold_fd_target + 1, 65536)
                env["LISTEN_PID"] = str(os.getpid())
                os.chdir(self.directory)
                os.execvpe(self.command[0], self.command, env)
            except BaseException as error:  # noqa: B902: the child must never return into the driver
                os.write(2, ("cannot start the mold: %s\n" % error).encode())
            os._exit(127)
        self.started.append(pid)
        mold_end.close()
        os.close(out_w)
        Lines(out_r, name)
        return pid, channel, notify

    def spawn(self, channel, name, slot, extra=None, watchdog=False):
        """Sends one spawn request on channel; returns the Worker with its pid (checks the reply).

        watchdog: WATCHDOG_USEC in its env and watchdog_pid, as with baton's [readiness] watchdog."""
        listener = self.listener()
        notify, notify_path = self.notify_socket(name)
        out_r, out_w = os.pipe()
        worker = Worker(name, slot, listener, notify, notify_path, out_r, out_w)
        env = dict(self.base_env)
        env.update({"LISTEN_FDS": str(self.listen_count), "LISTEN_FDNAMES": self.listen_names, "NOTIFY_SOCKET": notify_path,
                    "BATON_SLOT": slot, "BATON_RELEASE": self.directory})
        fds = [listener.fileno(), out_w, out_w, out_r]
        targets = [LISTEN_TARGET, 1, 2, PIPE_KEEP_TARGET]
        if self.unix:
            worker.unix_listener, worker.unix_path = self.unix_listener(name)
            fds.append(worker.unix_listener.fileno())
            targets.append(UNIX_TARGET)
        if watchdog:
            env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        if extra is not None:
            fds.append(extra.fileno())
            targets.append(self.mold_fd_target)
            env["BATON_MOLD_FD"] = str(self.mold_fd_target)
        self.next_id += 1
        request = {"op": "spawn", "id": self.next_id, "env": ["%s=%s" % kv for kv in sorted(env.items())],
                   "fds": targets, "listen_pid": True, "watchdog_pid": watchdog}
        check = "%s spawn reply" % name
        channel.sendmsg([json.dumps(request).encode()],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
        reply = self.receive(channel, check)
        if reply.get("id") != self.next_id or not isinstance(reply.get("pid"), int) or "error" in reply:
            raise CheckFailed(check, "expected {\"id\": %d, \"pid\": N}, got %r" % (self.next_id, reply))
        worker.pid = reply["pid"]
        self.started.append(worker.pid)
        self.ok(check, "pid %d" % worker.pid)
        return worker

    def receive(self, channel, check):
        """One JSON datagram from channel, within the timeout."""
        left = self.timeout
        if not select.select([channel], [], [], left)[0]:
            raise CheckFailed(check, "no reply within %ss" % self.timeout)
        data = channel.recv(65536)
        if not data:
            raise CheckFailed(check, "the channel was closed (end of file) instead of a reply")
        try:
            return json.loads(data)
        except ValueError:
            raise CheckFailed(check, "not JSON: %r" % data[:200])

    def wait_exit(self, pid, check):
        """The exit code of pid (our child), within the timeout."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
        if pidfd is not None:
            ready = select.select([pidfd], [], [], self.timeout)[0]
            os.close(pidfd)
            if not ready:
                raise CheckFailed(check, "pid %d did not exit within %ss" % (pid, self.timeout))
        _, status = os.waitpid(pid, 0)
        if pid in self.started:
            self.started.remove(pid)
        return os.waitstatus_to_exitcode(status)

    # -- checks --------------------------------------------------------------

    def http(self, worker, path, check, unix=False):
        if unix:
            conn = UnixHTTPConnection(worker.unix_path, self.timeout)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as error:
            raise CheckFailed(check, "GET %s: %s" % (path, error))
        finally:
            conn.close()
        if response.status != 200:
            raise CheckFailed(check, "GET %s: status %d" % (path, response.status))
        return body

    def cleanup(self):
        for pid in list(self.started):
            try:
                os.kill(pid, signal.SIGKILL)  # our children, not reaped yet: the pid is still theirs
            except OSError:
                pass
        deadline = self.deadline()
        for pid in list(self.started):
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.05)
        shutil.rmtree(self.temp, ignore_errors=True)


def all_pids():
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]
