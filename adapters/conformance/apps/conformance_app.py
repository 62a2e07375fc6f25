"""The conformance driver's WSGI app (adapters/conformance/mold_conformance.py).

Loaded once by the mold (``conformance_app:application``); every worker forked
from it serves:

- ``GET /env``: JSON with this process's pid, LISTEN_PID, LISTEN_FDS, BATON_SLOT
- ``GET /slow?ms=N``: prints ``slow-start PID`` on stdout, sleeps N ms, answers ``slow done``
- ``GET /warm``: fills ``_warm`` (run-time state, as a cache) once: ``{"warmed": "<pid that warmed it>"}``
- anything else: ``ok``

``_ballast`` is filled at import, in the mold, so that workers share it copy-on-write.
"""

import json
import os
import sys
import time

_ballast = b"\x01" * (int(os.environ.get("CONFORMANCE_APP_MB", "16")) << 20)
_warm = []


def application(environ, start_response):
    """Answers the three routes above."""
    path = environ.get("PATH_INFO", "")
    if path == "/env":
        body = json.dumps({
            "pid": os.getpid(),
            "listen_pid": os.environ.get("LISTEN_PID"),
            "listen_fds": os.environ.get("LISTEN_FDS"),
            "baton_slot": os.environ.get("BATON_SLOT"),
            "ballast": len(_ballast),
            "warmed": _warm[0][0] if _warm else None,
        })
    elif path == "/warm":
        if not _warm:
            _warm.append((str(os.getpid()), b"\x03" * (4 << 20)))
        body = json.dumps({"warmed": _warm[0][0]})
    elif path == "/slow":
        query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
        print("slow-start %d" % os.getpid(), flush=True)
        sys.stdout.flush()
        time.sleep(int(query.get("ms", "1000")) / 1000.0)
        body = "slow done"
    else:
        body = "ok"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
