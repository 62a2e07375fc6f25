#!/usr/bin/env python3
"""A mold for baton's mold mode: loads a WSGI app once, then forks workers on request.

    python3 baton_mold.py package.module:app

baton starts this as `[app] command` with `[app] mode = "mold"`. It imports the app
(everything the workers share copy-on-write), sends READY=1 to NOTIFY_SOCKET, and then
answers baton's spawn requests on the channel named by BATON_MOLD_FD, exactly as
docs/MOLD.md says: double fork (the worker becomes baton's child), own process group, default
signals, the attached descriptors at their target numbers, every other descriptor
closed, the worker's environment plus LISTEN_PID (and WATCHDOG_PID). The worker serves
the already-loaded app with waitress on the inherited sockets, sends READY=1 when it
serves, and on SIGTERM stops accepting, finishes the requests in flight and exits 0.

Standard library plus waitress (PyPI). WAITRESS_THREADS sets the worker's threads (4).
"""

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time


def notify(message, path=None):
    """Sends one sd_notify datagram to NOTIFY_SOCKET (no-op without one)."""
    path = path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            # Never blocks: the queue of a baton stopped or busy fills (net.unix.max_dgram_qlen
            # datagrams), and a blocking send stalled every request behind it (a starved audit:
            # 12-15 s with baton stopped for 18 s); the datagram is dropped instead.
            s.setblocking(False)
            s.sendto(message.encode(), path)
    except OSError:
        # baton is gone (killed: its workers keep serving until the next baton takes them
        # over), replaced the socket (that take-over) or its queue is full: best effort, as
        # sd_notify is.
        pass


def load_app(spec):
    """Imports `module:attribute` (the current directory first on sys.path)."""
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    return getattr(module, attribute or "application")


# MARK: - The mold


def exit_zero_on_sigterm():
    """A mold's SIGTERM: exit 0 at once (it serves no request of its own)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def serve_requests(app, channel):
    """Answers spawn requests until baton closes the channel (end of file).

    It waits on the channel and on a signal wakeup pipe: Python runs a signal's handler on the
    main thread, at its next bytecode, and a blocking recvmsg alone returns for a signal only
    when it interrupts that very call. A SIGTERM that lands on another thread (a warm-up thread
    still exiting) or just before the call would leave the mold asleep until the next request."""
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    try:
        answer_requests(app, channel, wake_read)
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wake_read)
        os.close(wake_write)


def answer_requests(app, channel, wake_read):
    while True:
        # The handler of a signal that woke the wait runs as this returns (PEP 475).
        if wake_read in select.select([channel, wake_read], [], [])[0]:
            try:
                os.read(wake_read, 64)
            except BlockingIOError:
                pass
            continue
        try:
            data, fds, _, _ = socket.recv_fds(channel, 1 << 20, 250)
        except InterruptedError:
            continue
        if not data:
            return
        try:
            request = json.loads(data)
        except ValueError:
            for fd in fds:
                os.close(fd)
            continue
        if request.get("op") != "spawn":
            for fd in fds:
                os.close(fd)
            reply = {"op": request.get("op"), "error": "this mold cannot do %r" % request.get("op")}
            channel.send(json.dumps(reply).encode())
            continue
        reply = {"id": request.get("id")}
        try:
            if len(fds) != len(request.get("fds", [])):
                raise OSError("%d descriptors attached for %d targets" % (len(fds), len(request.get("fds", []))))
            reply["pid"] = spawn(app, request, fds, channel)
        except OSError as error:
            reply["error"] = str(error.strerror or error)
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        channel.send(json.dumps(reply).encode())


def spawn(app, request, fds, channel):
    """Double fork: the intermediate child forks the worker, reports its pid and exits, so
    the worker is re-parented to baton (the child subreaper) before the reply."""
    sys.stdout.flush()
    sys.stderr.flush()
    # Every object allocated so far goes to the permanent generation: the worker's collector
    # never walks them, so it does not write into their headers and copy the mold's pages.
    gc.freeze()
    read_end, write_end = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            os.close(read_end)
            worker = os.fork()
            if worker == 0:
                os.close(write_end)
                become_worker(app, request, fds)  # never returns
            os.write(write_end, str(worker).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    text = b""
    while True:
        chunk = os.read(read_end, 64)
        if not chunk:
            break
        text += chunk
    os.close(read_end)
    os.waitpid(intermediate, 0)
    if not text:
        raise OSError("the intermediate child exited before it forked the worker")
    return int(text)


# MARK: - The worker


def place_descriptors(fds, targets):
    """Each attached descriptor at its target number; every other one closed. A target the
    process cannot have (RLIMIT_NOFILE: baton's hold descriptor at 1000) is skipped, as
    baton's own launcher does."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        pairs = [(fd, target) for fd, target in zip(fds, targets) if target < soft]
        fds, targets = [fd for fd, _ in pairs], [target for _, target in pairs]
    high = max(targets + [2]) + 16
    moved = [os.dup(fd) if fd >= high else fcntl_dup_above(fd, high) for fd in fds]
    for fd, target in zip(moved, targets):
        os.dup2(fd, target, inheritable=True)
    keep = sorted(set(targets) | {0})
    if 1 not in keep:
        keep.append(1)
    if 2 not in keep:
        keep.append(2)
    keep = sorted(keep)
    limit = os.sysconf("SC_OPEN_MAX")
    start = 0
    for fd in keep:
        if start < fd:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, limit)
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)


def fcntl_dup_above(fd, low):
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, low)


def become_worker(app, request, fds):
    """The worker: its own process group (in the mold's session), default signals, its
    descriptors and environment, then the app served on the inherited sockets. Never returns."""
    code = 1
    try:
        # The mold's signal wakeup pipe is closed below: a signal must not write into whatever
        # the worker opens at its number.
        signal.set_wakeup_fd(-1)
        os.setpgid(0, 0)
        for number in signal.valid_signals():
            if number in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(number, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # What the interpreter sets at its start-up, as an exec'd Python worker has it: with
        # SIGPIPE at its default, a write to a connection the client closed (a load generator
        # that stops with requests in flight) killed the worker and every request it held.
        for name in ("SIGPIPE", "SIGXFSZ"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        place_descriptors(fds, list(request.get("fds", [])))
        # Only the variables that differ change: most of the worker's environment is the mold's,
        # and replacing all of it would free and reallocate objects in pages it shares.
        wanted = dict(entry.partition("=")[::2] for entry in request.get("env", []))
        for name in [name for name in os.environ if name not in wanted]:
            del os.environ[name]
        for name, value in wanted.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        if request.get("listen_pid"):
            os.environ["LISTEN_PID"] = str(os.getpid())
        if request.get("watchdog_pid"):
            os.environ["WATCHDOG_PID"] = str(os.getpid())
        # The mold's streams write to 1 and 2, now the worker's own output (flushed before the
        # fork): new ones would look up the locale's encoding and replace objects the worker
        # shares with the mold, a few hundred KiB of copied pages per worker.
        for number, name in ((1, "stdout"), (2, "stderr")):
            try:
                usable = getattr(sys, name).fileno() == number
            except (AttributeError, OSError, ValueError):
                usable = False
            if not usable:
                setattr(sys, name, os.fdopen(number, "w", buffering=1, closefd=False))
        code = serve(app)
    except BaseException as error:  # noqa: B036 - whatever happens, the worker must not return into the mold
        try:
            print("baton_mold worker: %s" % error, file=sys.stderr, flush=True)
        except Exception:
            pass
    finally:
        os._exit(code)


def serve(app):
    """waitress on the sockets at 3.. (LISTEN_FDS); READY=1 once serving; SIGTERM drains.
    `{"op": "promote"}` on BATON_MOLD_FD (refork) drains the same way, answers
    `{"op": "promoted"}` and serves spawn requests as a mold from then on."""
    import waitress
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer
    from waitress.task import WSGITask

    count = int(os.environ.get("LISTEN_FDS", "0"))
    if count < 1:
        raise RuntimeError("no listening socket (LISTEN_FDS)")
    sockets = [socket.socket(fileno=3 + i) for i in range(count)]
    socket_map = {}
    threads = int(os.environ.get("WAITRESS_THREADS", "4"))
    served = [0]

    def counted(environ, start_response):
        served[0] += 1  # one writer per request; a lost increment only delays the report
        return app(environ, start_response)

    server = waitress.create_server(counted, map=socket_map, sockets=sockets, threads=threads, ident="baton_mold")
    stopping = threading.Event()

    class DrainingTask(WSGITask):
        """A response sent once the drain began says `Connection: close` and closes its
        connection when sent: a keep-alive client opens its next connection to another
        worker instead of reusing one that this worker is about to close."""

        def build_response_header(self):
            if stopping.is_set():
                self.set_close_on_finish()
            return super().build_response_header()

    class DrainingChannel(HTTPChannel):
        task_class = DrainingTask

    listeners = [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = DrainingChannel
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    start_watchdog()
    # Refork: baton may promote this worker to be the next mold on this channel.
    channel = None
    if os.environ.get("BATON_MOLD_FD"):
        channel = socket.socket(fileno=int(os.environ["BATON_MOLD_FD"]))
        channel.setblocking(False)
    promoted = False
    notify("READY=1\nSTATUS=serving")
    listening = True
    reported, reported_at = 0, 0.0
    while True:
        wasyncore.loop(timeout=0.1, map=socket_map, use_poll=True, count=1)
        if served[0] != reported and time.monotonic() - reported_at >= 0.5:
            # baton's [rolling] max_requests and refork count these; at most twice a second.
            reported, reported_at = served[0], time.monotonic()
            notify("X_BATON_REQUESTS=%d" % reported)
        if channel is not None and not promoted:
            try:
                data = channel.recv(4096)
            except BlockingIOError:
                data = None
            if data == b"":
                channel = None  # baton closed it: no promotion will come
            elif data:
                try:
                    promoted = json.loads(data).get("op") == "promote"
                except ValueError:
                    promoted = False
                if promoted:
                    stopping.set()
        if not stopping.is_set():
            continue
        if listening:
            notify("STOPPING=1")
            for listener in listeners:
                # wasyncore's close (the listening socket), not BaseWSGIServer.close(), which
                # closes the server's trigger too: the pipe a task thread writes to when its
                # response is ready, to wake this loop. A request finishing after that would
                # write to a closed descriptor (a traceback on stderr) and its answer would
                # wait for the loop's next timeout.
                wasyncore.dispatcher.close(listener)
            listening = False
            stopped_at = time.monotonic()
        busy = False
        for dispatcher in list(socket_map.values()):
            if not isinstance(dispatcher, HTTPChannel):
                continue
            if dispatcher.requests or dispatcher.total_outbufs_len or dispatcher.request is not None:
                busy = True
            elif time.monotonic() - stopped_at < 0.5:
                # A connection accepted just before the listeners closed may have its first
                # request on the way: idle connections are closed only after this grace.
                busy = True
            else:
                dispatcher.handle_close()  # idle keep-alive connection
        if not busy:
            break
    server.task_dispatcher.shutdown()
    if not promoted:
        return 0
    # The worker's threads are gone and its requests answered: it becomes a mold.
    for dispatcher in list(socket_map.values()):
        dispatcher.close()
    exit_zero_on_sigterm()
    channel.setblocking(True)
    notify("STATUS=mold (promoted)")
    channel.send(json.dumps({"op": "promoted"}).encode())
    serve_requests(app, channel)
    return 0


def start_watchdog():
    """WATCHDOG=1 at half of WATCHDOG_USEC, when baton's worker watchdog is on."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if usec <= 0 or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return

    def ping():
        while True:
            notify("WATCHDOG=1")
            threading.Event().wait(usec / 2e6)

    threading.Thread(target=ping, daemon=True).start()


def prepare_workers():
    """What every worker would otherwise do for itself as it starts, done once in the mold:
    a module a worker imports, or a cache it fills, lands in pages of its own (and every
    object it allocates meanwhile fills a hole in a page it shared with the mold, copying
    that page too). Done here, the workers share it copy-on-write."""
    import fcntl  # noqa: F401 - place_descriptors
    import logging
    import resource  # noqa: F401 - place_descriptors

    import waitress  # noqa: F401
    from waitress import channel, server, task, wasyncore  # noqa: F401 - serve

    # waitress warns "Task queue depth is N" each time a request waits for a thread: under
    # load that is most requests, and every line goes through baton's log. Errors still show.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # waitress resolves its default listen address with getaddrinfo even when it is handed
    # sockets, and Python encodes the host name with the idna codec: its first use imports
    # encodings.idna, stringprep and unicodedata, about 1 MiB per worker that imports them.
    "0.0.0.0".encode("idna")


def warm_waitress(requests=20):
    """Serves `requests` requests to a throwaway app (never the user's) through waitress's
    request path, on a unix socket in the abstract namespace with one task thread, joined
    before it returns. Python 3.11 and later rewrite a function's code in place once it ran
    a few times (the specializing interpreter): run here, waitress's request path is
    rewritten once in pages every worker shares, instead of in a copy per worker."""
    import waitress
    from waitress import wasyncore

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    socket_map = {}
    server = None
    client = None
    try:
        listener.bind("\0baton_mold-warm-%d" % os.getpid())
        server = waitress.create_server(hello, map=socket_map, sockets=[listener], threads=1, ident="baton_mold")
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        client.setblocking(False)
        deadline = time.monotonic() + 10
        for _ in range(requests):
            client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\nok"):
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer within 10 s")
                wasyncore.loop(timeout=0.05, map=socket_map, use_poll=True, count=1)
                try:
                    answer += client.recv(65536)
                except BlockingIOError:
                    pass
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.task_dispatcher.shutdown()
        for dispatcher in list(socket_map.values()):
            dispatcher.close()
        listener.close()


def main():
    if len(sys.argv) != 2 or ":" not in sys.argv[1]:
        print("usage: baton_mold.py package.module:app", file=sys.stderr)
        return 2
    try:
        channel_fd = int(os.environ["BATON_MOLD_FD"])
    except (KeyError, ValueError):
        print("baton_mold: BATON_MOLD_FD is not set: run me as baton's [app] command with [app] mode = \"mold\"", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)
    exit_zero_on_sigterm()
    app = load_app(sys.argv[1])
    prepare_workers()
    try:
        warm_waitress()
    except Exception as error:  # an optimisation: the mold serves its purpose without it
        print("baton_mold: waitress warm-up skipped: %s" % error, file=sys.stderr)
    channel = socket.socket(fileno=channel_fd)
    notify("READY=1\nSTATUS=mold loaded %s" % sys.argv[1])
    serve_requests(app, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
