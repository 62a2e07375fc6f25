#!/usr/bin/env python3
"""Conformance driver for molds (docs/MOLD.md): plays baton's side against a mold command.

    mold_conformance.py [--directory DIR] [--timeout S] [--refork] [--unix] -- COMMAND...

It starts COMMAND as baton would start a mold (listening socket at fd 3,
with --unix a unix stream listener at fd 4 too,
LISTEN_FDS/LISTEN_PID, NOTIFY_SOCKET, BATON_MOLD_FD, BATON_SLOT=mold,
BATON_RELEASE), with real processes and sockets, and checks what the protocol
promises: readiness, spawn replies, the double fork (the worker is the
driver's child, which is a child subreaper, and no zombie is left under the
mold), its own process group in the mold's session, descriptor placement, LISTEN_PID, serving, WATCHDOG=1 when asked (watchdog_pid, WATCHDOG_USEC), serving with its
NOTIFY_SOCKET's queue full (a send that never blocks), graceful SIGTERM,
copy-on-write sharing between two workers, the mold's exit 0 on end of file
and on SIGTERM (a second mold), and with --refork the promotion of a worker
to a mold.

The mold must load an app with the routes of adapters/conformance/apps
(config.ru or conformance_app.py): GET /env, GET /slow?ms=N.

Not checked (no event to await): that the mold never accepts on its own
listening socket, and that the worker's signal mask is empty. Descriptors a
runtime opens for itself (anon_inode: eventfd/epoll, a pipe with both ends in
the worker, /dev/null on stdin) are allowed and printed with the check.

Each worker gets a listening socket of its own (not the mold's) so that every
HTTP check reaches the worker it is about. One line per check on stdout; the
mold's and workers' output on stderr, prefixed. Exit 0 when every check
passed, 1 naming the first failed check, 2 on a usage error, 3 on SIGTERM. Every wait is
bounded by --timeout; on the way out it SIGKILLs, by pid, whatever it started
that is still running, and reaps it.
"""

import argparse
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time

from baton_side import (LISTEN_TARGET, PIPE_KEEP_TARGET, PR_SET_CHILD_SUBREAPER, UNIX_TARGET, WATCHDOG_USEC, BatonSide,
                        CheckFailed, all_pids, proc_stat, smaps_rollup)


class Driver(BatonSide):
    """Runs the checks, in order, against the mold command."""

    def start_mold(self):
        self.mold_pid, self.channel, self.mold_notify = self.launch_mold("mold")
        self.wait_ready("mold ready", self.mold_notify, self.mold_pid)
        self.ok("mold ready", "READY=1 from the mold (pid %d)" % self.mold_pid)

    def check_mold_term(self):
        """A second mold, once ready, exits 0 on SIGTERM."""
        pid, channel, notify = self.launch_mold("mold2")
        self.wait_ready("mold SIGTERM", notify, pid)
        os.kill(pid, signal.SIGTERM)
        code = self.wait_exit(pid, "mold SIGTERM")
        channel.close()
        if code != 0:
            raise CheckFailed("mold SIGTERM", "a ready mold exited %d on SIGTERM, expected 0" % code)
        self.ok("mold SIGTERM", "a second mold (pid %d) exited 0 on SIGTERM" % pid)

    def check_worker(self, worker, parent):
        """Everything a freshly spawned worker must be (parent: the mold that forked it)."""
        name, pid = worker.name, worker.pid
        stat = proc_stat(pid)
        if stat is None or stat[1] != os.getpid():
            raise CheckFailed(name + " parent", "ppid of %d is %s, not the driver (%d): no double fork?"
                              % (pid, stat and stat[1], os.getpid()))
        self.ok(name + " parent", "ppid %d is the driver (a child subreaper)" % os.getpid())
        zombies = [p for p in all_pids() if (s := proc_stat(p)) and s[1] == parent and s[0] == "Z"]
        if zombies:
            raise CheckFailed(name + " intermediate reaped", "zombies under mold %d: %s" % (parent, zombies))
        self.ok(name + " intermediate reaped", "no zombie under %d" % parent)
        self.wait_ready(name + " ready", worker.notify, pid)
        self.ok(name + " ready", "READY=1 from pid %d on its own NOTIFY_SOCKET" % pid)
        # before any request: a connection being closed would show as a stray socket
        self.check_fds(worker)
        seen = json.loads(self.http(worker, "/env", name + " serves"))
        self.ok(name + " serves", "GET /env on its inherited socket")
        if seen.get("pid") != pid or seen.get("listen_pid") != str(pid):
            raise CheckFailed(name + " LISTEN_PID", "pid %s LISTEN_PID %s, expected %d" % (seen.get("pid"), seen.get("listen_pid"), pid))
        if seen.get("listen_fds") != str(self.listen_count) or seen.get("baton_slot") != worker.slot:
            raise CheckFailed(name + " environment", "LISTEN_FDS %r BATON_SLOT %r" % (seen.get("listen_fds"), seen.get("baton_slot")))
        self.ok(name + " LISTEN_PID", "LISTEN_PID=%d, LISTEN_FDS=%d, BATON_SLOT=%s" % (pid, self.listen_count, worker.slot))
        if self.unix:
            seen = json.loads(self.http(worker, "/env", name + " serves on unix", unix=True))
            if seen.get("pid") != pid:
                raise CheckFailed(name + " serves on unix", "answered by pid %s, not %d" % (seen.get("pid"), pid))
            self.ok(name + " serves on unix", "GET /env on its inherited unix listener (fd %d)" % UNIX_TARGET)
        if "worker_boot_pid" in seen:  # an app that registered an adapter's after-fork hook
            if seen["worker_boot_pid"] != pid:
                raise CheckFailed(name + " worker boot hook", "ran in %r, not in the worker %d" % (seen["worker_boot_pid"], pid))
            self.ok(name + " worker boot hook", "ran in the worker")
        stat = proc_stat(pid)
        session = os.getsid(0)
        if stat[2] != pid or stat[3] != session:
            raise CheckFailed(name + " process group", "pgrp %d session %d, expected pgrp %d in session %d" % (stat[2], stat[3], pid, session))
        self.ok(name + " process group", "process group %d, in the mold's session %d" % (pid, session))

    def check_fds(self, worker):
        """The targets hold what was sent; nothing else is open but what a runtime opens itself.

        A stray must last: a descriptor being closed (the socket READY=1 was
        just sent on, say) is gone on a later look; a leaked one is there until
        the timeout."""
        deadline = self.deadline()
        while True:
            try:
                return self.check_fds_once(worker)
            except CheckFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def check_fds_once(self, worker):
        check = worker.name + " descriptors"
        pid = worker.pid
        links = {}
        for entry in os.listdir("/proc/%d/fd" % pid):
            try:
                links[int(entry)] = os.readlink("/proc/%d/fd/%s" % (pid, entry))
            except OSError:
                pass
        expected = {LISTEN_TARGET: "socket:[%d]" % os.fstat(worker.listener.fileno()).st_ino,
                    1: "pipe:[%d]" % os.fstat(worker.out_w).st_ino, 2: "pipe:[%d]" % os.fstat(worker.out_w).st_ino,
                    PIPE_KEEP_TARGET: "pipe:[%d]" % os.fstat(worker.out_r).st_ino}
        if worker.unix_listener is not None:
            expected[UNIX_TARGET] = "socket:[%d]" % os.fstat(worker.unix_listener.fileno()).st_ino
        for target, link in getattr(worker, "extra_expected", {}).items():
            expected[target] = link
        for target, link in expected.items():
            if links.get(target) != link:
                raise CheckFailed(check, "fd %d is %s, expected %s" % (target, links.get(target), link))
        allowed, stray = [], []
        counts = {}
        for link in links.values():
            counts[link] = counts.get(link, 0) + 1
        for fd, link in sorted(links.items()):
            if fd in expected:
                continue
            if fd == 0 and link == "/dev/null":
                allowed.append("0=/dev/null")
            elif link.startswith("anon_inode:"):
                allowed.append("%d=%s" % (fd, link))  # eventfd/epoll the runtime makes itself
            elif link.startswith("pipe:") and counts[link] >= 2 and link not in expected.values():
                allowed.append("%d=%s (both ends here)" % (fd, link))  # a runtime's own self-pipe
            else:
                stray.append("%d=%s" % (fd, link))
        if stray:
            raise CheckFailed(check, "stray descriptors %s" % ", ".join(stray))
        self.ok(check, "targets %s as sent%s" % (",".join(str(t) for t in sorted(expected)), (", runtime's own: " + " ".join(allowed)) if allowed else ""))

    def check_sharing(self, a, b):
        """Two workers forked from one mold share anonymous memory copy-on-write."""
        check = "copy-on-write sharing"
        parts = []
        for w in (a, b):
            m = smaps_rollup(w.pid)
            parts.append("%s Rss %d kB Pss %d kB Anonymous %d kB Pss_Anon %s kB"
                         % (w.name, m["Rss"], m["Pss"], m["Anonymous"], m.get("Pss_Anon", "?")))
            if not m["Pss"] < m["Rss"]:
                raise CheckFailed(check, "%s: Pss %d not below Rss %d" % (w.name, m["Pss"], m["Rss"]))
            if "Pss_Anon" in m and not m["Pss_Anon"] * 4 < m["Anonymous"] * 3:
                raise CheckFailed(check, "%s: Pss_Anon %d kB is over 3/4 of Anonymous %d kB: little is shared"
                                  % (w.name, m["Pss_Anon"], m["Anonymous"]))
        self.ok(check, "; ".join(parts))

    def check_watchdog(self, worker):
        """Spawned with watchdog_pid and WATCHDOG_USEC, a worker sends WATCHDOG=1 every half of it."""
        check = worker.name + " watchdog"
        start = time.monotonic()
        self.wait_message(check, worker.notify, worker.pid, "WATCHDOG=1", count=3)
        self.ok(check, "WATCHDOG=1 three times in %.2fs (WATCHDOG_USEC=%d)" % (time.monotonic() - start, WATCHDOG_USEC))

    def check_notify_full(self, worker):
        """With its NOTIFY_SOCKET's queue full (baton stopped or busy), a worker serves on: its
        sends (X_BATON_REQUESTS, WATCHDOG=1) never block; what does not fit is dropped."""
        check = worker.name + " notify queue full"
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        filler.setblocking(False)
        queued = 0
        try:
            while queued < 100000:
                filler.sendto(b"X_CONFORMANCE_FILL=1", worker.notify_path)
                queued += 1
        except BlockingIOError:
            pass
        finally:
            filler.close()
        # Adapters report served requests at most twice a second: 1.5 s of requests has them
        # send while the queue is full.
        served, end = 0, time.monotonic() + 1.5
        while time.monotonic() < end:
            self.http(worker, "/env", check)
            served += 1
        worker.notify.setblocking(False)
        try:
            while True:
                worker.notify.recv(4096)
        except BlockingIOError:
            pass
        finally:
            worker.notify.setblocking(True)
        self.ok(check, "%d requests in 1.5 s with %d datagrams queued on its NOTIFY_SOCKET" % (served, queued))

    def check_graceful_term(self, worker):
        """SIGTERM to the worker's group during a request: the request completes, exit 0."""
        check = worker.name + " SIGTERM"
        result = {}

        def slow():
            try:
                result["body"] = self.http(worker, "/slow?ms=1000", check)
            except CheckFailed as error:
                result["error"] = str(error)

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        if not worker.output.wait_for("slow-start %d" % worker.pid, self.deadline()):
            raise CheckFailed(check, "the slow request did not start within %ss" % self.timeout)
        os.killpg(worker.pid, signal.SIGTERM)
        thread.join(self.timeout + 1)
        if result.get("body") != "slow done":
            raise CheckFailed(check, "the request in flight did not complete: %s" % result.get("error", result))
        code = self.wait_exit(worker.pid, check)
        if code != 0:
            raise CheckFailed(check, "exit code %d, expected 0" % code)
        self.ok(check, "the request in flight completed, exit 0")

    def check_refork(self):
        """Promotes a worker spawned with a channel, forks a worker from it, ends it."""
        driver_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        promoted = self.spawn(self.channel, "w3", "3", extra=worker_end)
        promoted.extra_expected = {self.mold_fd_target: "socket:[%d]" % os.fstat(worker_end.fileno()).st_ino}
        worker_end.close()
        self.check_worker(promoted, self.mold_pid)
        # state warmed at run time (GET /warm) must be in the workers the promoted mold forks
        try:
            warmed = json.loads(self.http(promoted, "/warm", "w3 warm")).get("warmed")
        except (ValueError, AttributeError):
            warmed = None  # an app without the route: not checked
        # promote during a request in flight: it completes, then the reply comes
        result = {}

        def slow():
            try:
                result["body"] = self.http(promoted, "/slow?ms=1000", "w3 promote")
            except CheckFailed as error:
                result["error"] = str(error)

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        if not promoted.output.wait_for("slow-start %d" % promoted.pid, self.deadline()):
            raise CheckFailed("w3 promote", "the slow request did not start within %ss" % self.timeout)
        driver_end.send(json.dumps({"op": "promote"}).encode())
        reply = self.receive(driver_end, "w3 promote")
        thread.join(self.timeout + 1)
        if reply.get("op") != "promoted" or "error" in reply:
            raise CheckFailed("w3 promote", "expected {\"op\": \"promoted\"}, got %r" % reply)
        if result.get("body") != "slow done":
            raise CheckFailed("w3 promote", "the request in flight did not complete: %s" % result.get("error", result))
        self.ok("w3 promote", "promoted after its request in flight completed")
        child = self.spawn(driver_end, "w4", "4")
        self.check_worker(child, promoted.pid)
        if warmed is not None:
            seen = json.loads(self.http(child, "/env", "w4 forked from the warmed worker")).get("warmed")
            if seen != warmed:
                raise CheckFailed("w4 forked from the warmed worker", "warmed %r, the promoted worker had %r" % (seen, warmed))
            self.ok("w4 forked from the warmed worker", "it has the %r the promoted worker warmed at run time" % warmed)
        self.check_graceful_term(child)
        driver_end.close()
        code = self.wait_exit(promoted.pid, "w3 end of file")
        if code != 0:
            raise CheckFailed("w3 end of file", "the promoted mold exited %d, expected 0" % code)
        self.ok("w3 end of file", "the promoted mold exited 0 on end of file")

    def run(self, refork):
        self.start_mold()
        w1 = self.spawn(self.channel, "w1", "1")
        self.check_worker(w1, self.mold_pid)
        w2 = self.spawn(self.channel, "w2", "2", watchdog=True)
        self.check_worker(w2, self.mold_pid)
        self.check_sharing(w1, w2)
        self.check_watchdog(w2)
        self.check_notify_full(w2)
        self.check_graceful_term(w1)
        if refork:
            self.check_refork()
        self.channel.close()
        code = self.wait_exit(self.mold_pid, "mold end of file")
        if code != 0:
            raise CheckFailed("mold end of file", "the mold exited %d, expected 0" % code)
        self.ok("mold end of file", "the mold exited 0")
        self.http(w2, "/env", "w2 outlives the mold")
        self.ok("w2 outlives the mold", "still serving after the mold exited")
        self.check_graceful_term(w2)
        self.check_mold_term()



def main():
    parser = argparse.ArgumentParser(description="Checks a mold command against docs/MOLD.md.")
    parser.add_argument("--directory", default=os.getcwd(), help="the mold's working directory (BATON_RELEASE)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds every wait is bounded by")
    parser.add_argument("--refork", action="store_true", help="also check promotion of a worker to a mold")
    parser.add_argument("--unix", action="store_true", help="a second listening socket, unix stream, at fd 4")
    parser.add_argument("command", nargs="+", help="the mold command (after --)")
    args = parser.parse_args()
    if not os.path.isdir(args.directory):
        print("mold_conformance: no such directory: %s" % args.directory, file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("mold_conformance: prctl(PR_SET_CHILD_SUBREAPER): errno %d" % ctypes.get_errno(), file=sys.stderr)
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # SIGTERM (a test runner giving up): still kill and reap what was started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    driver = Driver(args.command, os.path.abspath(args.directory), args.timeout, unix=args.unix)
    try:
        driver.run(args.refork)
    except CheckFailed as error:
        print("FAIL %s" % error, flush=True)
        print("conformance: FAILED at %s (%d checks passed before)" % (error.check, driver.passed), flush=True)
        return 1
    finally:
        driver.cleanup()
    print("conformance: all %d checks passed" % driver.passed, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
