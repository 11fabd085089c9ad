"""`posttrain serve --workers N`: several server processes on one socket and one store.

The parent process migrates the store, registers the built-in models, converts the embedded
model if needed, binds the socket, and then only supervises: uvicorn's process manager starts N
worker processes (the `spawn` start method, so no thread or connection is inherited), hands each
the listening socket (the kernel spreads connections over the processes that accept on it),
restarts a worker that dies, and on SIGTERM/SIGINT stops them all gracefully (each closes its
store: the writer flushes, the WAL is checkpointed).

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


def run_workers(workers: int, settings: WorkerSettings, sock: socket.socket, *, log_level: str = "warning",
                app: str = APP, h11_max_incomplete_event_size: int | None = None) -> None:
    """Supervise `workers` processes serving `app` (an import string of an app factory that
    reads `ENV`) on the bound `sock`, until SIGTERM/SIGINT."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ[ENV] = json.dumps(dataclasses.asdict(settings))
    config = uvicorn.Config(app, factory=True, workers=workers, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5,
                            h11_max_incomplete_event_size=h11_max_incomplete_event_size)
    Multiprocess(config, sockets=[sock]).run()
