"""Sticky routing for the chat endpoint, cached per process.

`route` runs on every chat request, on the event loop, so its usual path touches no database:
the active experiments are cached per store, and checked on every request against the
"experiments" topic of store/invalidation.py (a memory read on PostgreSQL, `PRAGMA
data_version` on SQLite). A change made anywhere (the CLI, another server process or host)
bumps that topic in the same transaction, so every server follows it from its next request
once the change is visible to it (docs/scale.md gives the bound per database); a change made
in this process applies at once.

Every GUARD_S seconds the route also schedules the guardrail check of each running experiment
that is due (every `check_seconds`), in a background thread: automatic rollback needs no
separate daemon.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from typing import Any

from posttrain.store._store import Store

GUARD_S = 0.25  # how often route() looks for a due guardrail check
log = logging.getLogger("posttrain.experiments")


class _Routes:
    def __init__(self) -> None:
        self.version: int | None = None
        self.guarded = float("-inf")
        self.failed = float("-inf")
        self.by_baseline: dict[str, dict[str, Any]] = {}
        self.last_guard: dict[str, float] = {}
        self.guarding = threading.Lock()


_routes: weakref.WeakKeyDictionary[Store, _Routes] = weakref.WeakKeyDictionary()


def bucket(experiment_id: str, user_id: str) -> float:
    """A user's place in [0, 1) for one experiment: sticky, and independent across experiments."""
    h = hashlib.sha256(f"{experiment_id}\x00{user_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def invalidate(store: Store) -> None:
    """Reread the experiments on the next request (called after a change in this process)."""
    r = _routes.get(store)
    if r is not None:
        r.version = None
        r.failed = float("-inf")


def _refresh(store: Store, r: _Routes, version: int) -> bool:
    from posttrain.store import experiments as q

    try:
        with store.session() as s:
            active = q.active_experiments(s)
    except Exception:  # e.g. a store not yet migrated to 0002: no experiments, never a failed chat
        log.exception("could not read the experiments; routing unchanged")
        return False
    r.version = version
    r.by_baseline = {e["baseline"]: e for e in active}
    return True


def _guard(store: Store, r: _Routes, now: float) -> None:
    """Start one background guardrail check for each running experiment that is due."""
    for exp in list(r.by_baseline.values()):
        if exp["status"] != "running":
            continue
        every = float(exp["config"].get("check_seconds", 60.0))
        if now - r.last_guard.get(exp["id"], float("-inf")) < every:
            continue
        if not r.guarding.acquire(blocking=False):
            return  # a check is still running
        r.last_guard[exp["id"]] = now

        def run(name: str = exp["name"]) -> None:
            from posttrain.experiments._manage import status

            try:
                result = status(store, name, check=True)
                if result["auto_rollback"]:
                    log.warning("experiment %s rolled back: %s", name, result["auto_rollback"])
            except Exception:
                log.exception("guardrail check of experiment %s failed", name)
            finally:
                r.guarding.release()

        threading.Thread(target=run, name="posttrain-guardrail", daemon=True).start()


def route(store: Store, user_id: str, requested_model: str) -> tuple[str, dict[str, Any] | None]:
    """(model to use, assignment to log on the completion, or None when no experiment applies)."""
    from posttrain.store import invalidation
    from posttrain.store.experiments import EXPERIMENTS_TOPIC

    r = _routes.get(store)
    if r is None:
        r = _routes.setdefault(store, _Routes())
    version = invalidation.watcher(store).version(EXPERIMENTS_TOPIC)
    now = time.monotonic()
    if version != r.version and now - r.failed >= GUARD_S:
        if not _refresh(store, r, version):
            r.failed = now  # retried after GUARD_S, not on every request
    if r.by_baseline and now - r.guarded > GUARD_S:
        r.guarded = now
        _guard(store, r, now)
    exp = r.by_baseline.get(requested_model)
    if exp is None:
        return requested_model, None
    if exp["status"] == "promoted":
        return exp["candidate"], {"experiment": exp["name"], "id": exp["id"], "arm": "promoted"}
    arm = "candidate" if bucket(exp["id"], user_id) < exp["fraction"] else "baseline"
    model = exp["candidate"] if arm == "candidate" else exp["baseline"]
    return model, {"experiment": exp["name"], "id": exp["id"], "arm": arm}
