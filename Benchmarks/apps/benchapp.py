"""The benchmark's WSGI app: the same for gunicorn, uWSGI and gunicorn under baton.

At import (once per worker, like a framework loading) it sleeps
BENCH_BOOT_DELAY seconds and fills BENCH_APP_MB MiB of memory (touched, so
resident). Each request answers "hello pid=N release=R" (the load client
reads pid and release from the body); BENCH_GROW_KB > 0 leaks that much
touched memory per request, for the memory-recycling scenario.
"""

import os
import time

_BOOT = float(os.environ.get("BENCH_BOOT_DELAY", "0"))
_MB = int(os.environ.get("BENCH_APP_MB", "50"))
_GROW = int(os.environ.get("BENCH_GROW_KB", "0")) * 1024
_RELEASE = os.environ.get("BENCH_RELEASE") or os.path.basename(os.getcwd())

if _BOOT > 0:
    time.sleep(_BOOT)
_ballast = b"\x01" * (_MB << 20)  # memset: every page touched
_leak = []


def application(environ, start_response):
    """Answers every request with a small text body naming this process."""
    if _GROW:
        _leak.append(b"\x02" * _GROW)
    body = ("hello pid=%d release=%s\n" % (os.getpid(), _RELEASE)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = application
