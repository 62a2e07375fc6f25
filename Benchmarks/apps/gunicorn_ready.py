"""gunicorn config hooks for a gunicorn under baton's notify readiness (`-c gunicorn_ready.py`).

gunicorn's arbiter sends READY=1 as it starts, before it forks its workers: baton would count
the slot ready (and, in a rollout, stop the worker it replaces) while the new worker is still
initialising. Here the master keeps quiet and each worker sends READY=1 from
`post_worker_init`, once its app is loaded, just before it accepts. The bench runs it with
BENCH_GUNICORN_READY=worker (Benchmarks/README.md: an A/B found no restart-window p99 gained).
"""

import os
import socket


def on_starting(server):
    """The arbiter reads NOTIFY_SOCKET when it notifies: without it, it stays quiet."""
    path = os.environ.pop("NOTIFY_SOCKET", None)
    if path:
        os.environ["BATON_READY_SOCKET"] = path


def post_worker_init(worker):
    """READY=1 from the worker (a process in the tree baton started, so baton takes it)."""
    path = os.environ.get("BATON_READY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", path)
