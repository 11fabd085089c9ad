"""`posttrain serve --workers N`: several server processes on one socket and one store.

The parent process migrates the store, registers the built-in models, converts the embedded
model if needed, binds the socket, and then only supervises: uvicorn's process manager starts N
worker processes (the `spawn` start method, so no thread or connection is inherited), restarts
a worker that dies, and on SIGTERM/SIGINT stops them all gracefully (each closes its store: the
writer flushes, the WAL is checkpointed). Each worker gets a listening socket of its own on the
port (SO_REUSEPORT), so the kernel spreads new connections evenly over the workers: on one
shared socket, the first worker to wake accepted a whole burst of keep-alive connections (a test
saw all 16 of a client's connections land on one of two workers).

Each worker is an ordinary server: its own app, group-commit writer, caches and default-model
weights. What one process caches is kept correct for the others through the database
(store/invalidation.py; see docs/scale.md for the bounds). The per-user limits of
serve/scheduler.py and the failed-key counts of serve/auth.py are per process.

The worker's settings travel in one environment variable (spawned processes inherit it), so
the app can be named by an import string, which is what uvicorn's process manager needs.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import socket
from typing import Any

__all__ = ["ENV", "WorkerSettings", "default_workers", "run_workers", "worker_app"]

ENV = "POSTTRAIN_SERVE_WORKER"
APP = "posttrain.serve.workers:worker_app"


@dataclasses.dataclass
class WorkerSettings:
    """What every worker needs to build the same app (JSON-serializable)."""

    db: str | None
    model: str
    system_prompt: str | None
    docs: bool
    auth_failures_per_minute: int
    limits: dict[str, Any]


def default_workers() -> int:
    """One worker per CPU this process may run on (what `--workers 0` means)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_app():  # noqa: ANN201  (a FastAPI app; imported lazily)
    """uvicorn app factory run in each worker process: the app over its own store."""
    from posttrain.serve.app import create_app, prepare_model
    from posttrain.serve.scheduler import Limits
    from posttrain.store._store import Store

    settings = WorkerSettings(**json.loads(os.environ[ENV]))
    store = Store.open(settings.db, upgrade=False)  # the parent migrated it
    app = create_app(store, default_model=settings.model, limits=Limits(**settings.limits),
                     system_prompt=settings.system_prompt, docs=settings.docs,
                     auth_failures_per_minute=settings.auth_failures_per_minute)
    app.state.model_ready = prepare_model(store, settings.model, load=False)
    # uvicorn's graceful shutdown runs the lifespan shutdown: flush the writer, close the store.
    app.router.on_shutdown.append(store.close)
    gc.collect()  # as serve() does in one process (see there)
    gc.freeze()
    return app


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A socket bound to (host, port), not listening yet (uvicorn listens), inheritable by the
    worker processes. `reuse_port`: with SO_REUSEPORT where the platform has it, so each worker
    can bind a socket of its own on the port. Binding also reserves the port, so the server binds
    first to fail early on a busy port and to learn the port number when `port` is 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_workers(workers: int, settings: WorkerSettings, sock: socket.socket, *, log_level: str = "warning",
                app: str = APP, h11_max_incomplete_event_size: int | None = None) -> None:
    """Supervise `workers` processes serving `app` (an import string of an app factory that
    reads `ENV`) on the port `sock` is bound to, until SIGTERM/SIGINT. With SO_REUSEPORT (Linux,
    the BSDs) `sock` must have been made by bind_socket(reuse_port=True); each worker then gets its own
    socket on that port. Without it, every worker accepts on `sock` itself."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ[ENV] = json.dumps(dataclasses.asdict(settings))
    config = uvicorn.Config(app, factory=True, workers=workers, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5,
                            h11_max_incomplete_event_size=h11_max_incomplete_event_size)
    if not hasattr(socket, "SO_REUSEPORT"):
        Multiprocess(config, sockets=[sock]).run()
        return
    host, port = sock.getsockname()[:2]

    class _OwnSockets(Multiprocess):
        """uvicorn's supervisor reads `self.sockets` exactly when it starts a worker (first
        start, restart, SIGHUP, SIGTTIN): hand each new worker a socket of its own."""

        @property
        def sockets(self) -> list[socket.socket]:
            made = bind_socket(host, port, reuse_port=True)
            handed.append(made)
            return [made]

        @sockets.setter
        def sockets(self, _value: list[socket.socket]) -> None:
            pass

        def keep_subprocess_alive(self) -> None:
            # Every socket handed out so far went to a worker that has started (spawn passed it a
            # duplicate): close the parent's copy, so a socket dies with its worker instead of
            # queueing connections nobody accepts.
            while handed:
                handed.pop().close()
            super().keep_subprocess_alive()

    handed: list[socket.socket] = []
    _OwnSockets(config, sockets=[]).run()
